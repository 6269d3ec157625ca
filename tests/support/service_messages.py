"""The Nova Sonic service's error messages, word for word, as the tests expect them.

The tests compare what a client receives with these literals, not with the emulator's own table
(`novabridge.emulator.service.Message`): a typo there would otherwise be agreed with. Sources: the messages seen from
the service and quoted in public issues and samples (gathered in the project's Nova Sonic notes), and for the
request-level refusals the Bedrock and AWS SigV4 error texts.
"""

INVALID_INPUT = "Invalid input request, please fix your input and try again."
"""ValidationException for a bad schema or sequence (livekit/agents#6200, pipecat-ai/pipecat#3122)."""
HISTORY_BEFORE_AUDIO = "Chat history should be sent completely before streaming audio."
"""ValidationException for audio inside a TEXT content block."""
INPUT_TIMEOUT = "Timed out waiting for input events"
"""ValidationException when no input arrives (aws-samples/amazon-nova-samples#69)."""
RST_STREAM_531 = "InternalErrorCode=531::RST_STREAM closed stream. HTTP/2 error code: NO_ERROR"
INSTABILITY = "System instability detected. Please retry your request."
"""ValidationException, transient (livekit/agents#6010)."""
TOOL_RESULT_PARSE = "Tool Response parsing error"
MODEL_TIMEOUT = "Model has timed out in processing the request"
"""ModelTimeoutException, also when the 8-minute connection lifetime runs out (amazon-nova-samples#147)."""
MODEL_STREAM_ERROR = "The model stream encountered an error. Please retry your request."
THROTTLED = "Too many requests, please wait before trying again."
TOO_MANY_STREAMS = "Too many concurrent requests. Please retry after the existing requests complete."
UNKNOWN_MODEL = "The provided model identifier is invalid."
BAD_SIGNATURE = "The request signature we calculated does not match the signature you provided."
UNKNOWN_KEY = "The security token included in the request is invalid."
EXPIRED_TOKEN = "The security token included in the request is expired"
NO_MODEL_ACCESS = "You don't have access to the model with the specified model ID."
