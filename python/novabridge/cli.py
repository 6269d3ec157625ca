"""The ``novabridge`` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

FAST_ENDPOINTING_S = 0.25


def _endpointing(value: str) -> float | None:
    if value.upper() in ("HIGH", "MEDIUM", "LOW"):
        return None
    if value == "fast":
        return FAST_ENDPOINTING_S
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError("expected HIGH, MEDIUM, LOW (the client decides), 'fast' or seconds") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError("endpointing seconds must be positive")
    return seconds


def _model_rules(value: str) -> tuple[str, str]:
    from novabridge.emulator.service import Generation  # the emulator's own copy of the service's facts; pure Python

    names = [generation.value for generation in Generation]
    model_id, eq, generation = value.partition("=")
    if not (eq and model_id and generation in names):
        raise argparse.ArgumentTypeError(f"expected ID=GENERATION with GENERATION one of {', '.join(names)}")
    return model_id, generation


def _credentials(value: str) -> tuple[str, str]:
    key, sep, secret = value.partition(":")
    if not sep or not key or not secret:
        raise argparse.ArgumentTypeError("expected ACCESS_KEY_ID:SECRET_ACCESS_KEY")
    return key, secret


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="novabridge", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    emulator = commands.add_parser(
        "emulator",
        help="serve a local Nova Sonic endpoint",
        description="Serve a local Nova Sonic endpoint until SIGINT or SIGTERM. When ready, print one JSON line "
        "with endpoint_uri and ca_file, and publish both in the state folder for other processes (OpenAvatarChat's "
        "handler with `emulator: true`). Each stdin line is a fault to arm (KIND[:name=value,...]). The emulator "
        "needs Python >= 3.12 with novabridge[emulator]; from any other Python, this command runs it on the worker "
        "environment of `novabridge setup-worker`.",
    )
    published_in = emulator.add_mutually_exclusive_group()
    published_in.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="publish the endpoint and CA in DIR/endpoint.json while serving (default ~/.novabridge/emulator)",
    )
    published_in.add_argument(
        "--no-state", action="store_true", help="publish nothing: the client reads the ready line itself"
    )
    emulator.add_argument(
        "--worker-python",
        metavar="PYTHON",
        help="when this Python cannot run the emulator, run it on PYTHON (default: `novabridge setup-worker`'s)",
    )
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=int, default=0, help="0 picks a free port")
    emulator.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host")
    emulator.add_argument("--scenario", type=Path, help="YAML or JSON file of turns")
    emulator.add_argument(
        "--endpointing",
        type=_endpointing,
        default=None,
        metavar="HIGH|MEDIUM|LOW|fast|SECONDS",
        help="the pause that ends a user turn; by default the client's endpointingSensitivity decides",
    )
    emulator.add_argument("--session-limit", type=float, metavar="S", help="connection lifetime (default 480)")
    emulator.add_argument("--input-timeout", type=float, metavar="S", help="input timeout (default 60)")
    emulator.add_argument("--silence-limit", type=float, metavar="S", help="user silence before error 531")
    emulator.add_argument("--think", type=float, metavar="S", help="time to first audio of a turn")
    emulator.add_argument("--speed", type=float, metavar="X", help="assistant audio sent at X times real time")
    emulator.add_argument("--max-streams", type=int, metavar="N", help="concurrent streams before throttling")
    emulator.add_argument("--credentials", type=_credentials, metavar="KEY:SECRET", help="verify SigV4 with these")
    emulator.add_argument(
        "--credentials-expire-in",
        type=float,
        metavar="S",
        help="the --credentials expire S seconds after start (0: already), then are refused as expired tokens",
    )
    emulator.add_argument(
        "--credentials-file",
        type=Path,
        metavar="JSON",
        help="temporary credentials issued to the account, read for each request: a JSON list of credential_process "
        "documents (AccessKeyId, SecretAccessKey, SessionToken, Expiration); rewrite it to rotate them",
    )
    emulator.add_argument(
        "--certs-dir",
        type=Path,
        metavar="DIR",
        help="keep the CA and certificate in DIR and use them again on the next run, so clients keep their ca_file",
    )
    emulator.add_argument(
        "--region", help="the region served: requests signed for another are refused, as a regional endpoint does"
    )
    emulator.add_argument(
        "--models",
        type=lambda value: frozenset(filter(None, value.split(","))),
        metavar="ID,...",
        help="the models offered (default: every Nova Sonic model it knows); others are an invalid model identifier",
    )
    emulator.add_argument(
        "--serve-model",
        action="append",
        default=[],
        type=_model_rules,
        metavar="ID=GENERATION",
        help="also serve a model id this release does not know, with a generation's rules (nova-sonic, nova-2-sonic); "
        "repeatable",
    )
    emulator.add_argument(
        "--deny-model",
        action="append",
        default=[],
        metavar="ID",
        help="answer this model with AccessDeniedException (access not granted); repeatable",
    )
    emulator.add_argument("--fault", action="append", default=[], metavar="SPEC", help="arm a fault; repeatable")
    emulator.add_argument(
        "--record-dir", type=Path, help="write each stream's recording here (audio as it comes, summary at its end)"
    )
    emulator.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="what goes to stderr: info (the default) logs each stream's opening, turns, faults, refusals with the "
        "rule that fired, and its end; warning only faults and refusals",
    )
    emulator.add_argument("--quiet", action="store_true", help="log errors only (same as --log-level error)")
    demo = commands.add_parser(
        "demo",
        help="a scripted three-turn conversation through the full topology",
        description="Start the emulator, run a scripted three-turn conversation (one turn interrupted) from a "
        "speech-like WAV through host, rings, worker and SDK, print the transcripts and latencies, and write "
        "user.wav, assistant.wav and timeline.png (both voices, the words, each turn's latency and the barge-in "
        "on one time axis).",
    )
    chat = commands.add_parser(
        "chat",
        help="the same conversation for any 16-bit WAV",
        description="Stream a WAV as the user's microphone, in real time, through the full topology; the ends of "
        "its utterances are found by energy, so each answer's latency is measured from them. Writes the "
        "assistant's audio to --output and timeline.png to --out.",
    )
    chat.add_argument("--input", type=Path, required=True, help="the user's side, a 16-bit PCM WAV")
    chat.add_argument("--output", type=Path, required=True, help="where to write the assistant's audio")
    for command in (demo, chat):
        command.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder")
        command.add_argument("--worker-python", help="a Python >= 3.12 with novabridge[sonic,emulator]")
        command.add_argument("--aws", action="store_true", help="talk to Bedrock (AWS credentials required)")
    setup = commands.add_parser(
        "setup-worker",
        help="make a Python >= 3.12 environment with novabridge[sonic,emulator] for the workers",
        description="Make a virtual environment for the worker processes (Python >= 3.12 with "
        "novabridge[sonic,emulator], the host's novabridge version), check it, and print its interpreter: the "
        "handler's worker_python. `novabridge emulator` from the host's environment runs the emulator there.",
    )
    setup.add_argument("--dir", type=Path, help="where to make it (default ~/.novabridge/worker)")
    setup.add_argument("--python", help="the Python >= 3.12 to base it on (default: found on the PATH)")
    setup.add_argument("--wheel", type=Path, help="install this novabridge wheel instead of the index's")
    doctor = commands.add_parser(
        "doctor",
        help="check everything a session needs, each with a verdict and the fix",
        description="Check, in one table, what a Nova Sonic session needs: the host's and the worker's Python and "
        "packages, where the worker's credentials come from (the source, never a value), the region, the "
        "endpoint's DNS, TCP, TLS and HTTP/2, and a real stream to the service's first answer. Exit status 1 if any "
        "check fails. The endpoint is the running emulator if one is published, else Bedrock, unless said here.",
    )
    doctor_target = doctor.add_mutually_exclusive_group()
    doctor_target.add_argument(
        "--emulator", action="store_true", help="check the running emulator (as published in the state folder)"
    )
    doctor_target.add_argument("--aws", action="store_true", help="check Bedrock's runtime endpoint in the region")
    doctor_target.add_argument("--endpoint-uri", metavar="URI", help="check another https:// endpoint")
    doctor.add_argument("--ca-file", type=Path, metavar="PEM", help="with --endpoint-uri: the CA to trust")
    doctor.add_argument(
        "--state-dir", type=Path, metavar="DIR", help="where the emulator publishes (as given to `novabridge emulator`)"
    )
    doctor.add_argument(
        "--worker-python",
        metavar="PYTHON",
        help="the worker's Python (default: this one if >= 3.12, else `novabridge setup-worker`'s)",
    )
    doctor.add_argument("--region", help="the region (default: AWS_REGION, AWS_DEFAULT_REGION, else us-east-1)")
    doctor.add_argument("--profile", help="the shared-config profile to take credentials from (default: AWS_PROFILE)")
    oac = commands.add_parser(
        "openavatarchat",
        aliases=["oac"],
        help="set up an OpenAvatarChat checkout to talk through Nova Sonic",
        description="Commands for an OpenAvatarChat checkout, run from its Python environment.",
    )
    oac_commands = oac.add_subparsers(dest="oac_command", required=True)
    oac_install = oac_commands.add_parser(
        "install",
        help="write novabridge's handler modules and config/chat_with_nova_sonic.yaml into the checkout",
        description="Write src/handlers/nova_sonic/ (one-line modules importing novabridge's Nova Sonic handler and "
        "portrait avatar) and config/chat_with_nova_sonic.yaml into an OpenAvatarChat checkout, then print the "
        "commands that start it. Files that differ from what would be written are left alone without --force.",
    )
    oac_install.add_argument("oac_dir", type=Path, metavar="OAC_DIR", help="the checkout (the folder with src/demo.py)")
    oac_install.add_argument(
        "--worker-python",
        metavar="PYTHON",
        help="the worker's Python >= 3.12 (default: the environment `novabridge setup-worker` made)",
    )
    oac_install.add_argument(
        "--emulator",
        action="store_true",
        help="talk to the local emulator (`novabridge emulator`) instead of Amazon Bedrock",
    )
    oac_install.add_argument("--force", action="store_true", help="replace files that differ")
    return parser


EMULATOR_DELEGATED = "NOVABRIDGE_EMULATOR_DELEGATED"
"""Set in the environment of an emulator this command handed to another Python, which must not hand it on again."""


def _emulator_unavailable() -> str | None:
    """Why this Python cannot serve the emulator, or None if it can."""
    if sys.version_info < (3, 12):
        return f"this is Python {sys.version_info[0]}.{sys.version_info[1]}"
    try:
        import novabridge.emulator.server  # noqa: F401 - the import is the check
    except ImportError as error:
        return f"{error.name or error} is not installed"
    return None


def _emulator_elsewhere(args: argparse.Namespace, argv: Sequence[str], reason: str) -> int:
    """Run ``novabridge emulator`` on the worker's Python in place of this process, or say what to do."""
    from novabridge.setup_worker import DEFAULT_DIR

    needs = "the emulator needs Python >= 3.12 with novabridge[emulator]"
    if os.environ.get(EMULATOR_DELEGATED):
        print(
            f"novabridge emulator: {sys.executable} cannot run the emulator ({reason}); {needs}: run "
            "`novabridge setup-worker` again (it installs the emulator) or `pip install 'novabridge[emulator]'` there",
            file=sys.stderr,
        )
        return 2
    python = args.worker_python or str(DEFAULT_DIR / "bin" / "python")
    if not Path(python).is_file():
        where = f"--worker-python {python} does not exist" if args.worker_python else f"there is no {python}"
        print(
            f"novabridge emulator: {reason} and {needs}, and {where}: run `novabridge setup-worker` (it makes "
            "that environment), or pass --worker-python",
            file=sys.stderr,
        )
        return 2
    print(f"novabridge emulator: {reason}; running it on {python}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os.environ[EMULATOR_DELEGATED] = "1"
    # exec, not a child: signals, stdin faults and the ready line reach the emulator itself, under this pid.
    os.execv(python, [python, "-m", "novabridge", *argv])


def _log_to_stderr(level_name: str) -> None:
    """The emulator's own log at ``level_name`` on stderr; other libraries' warnings (or everything, at debug)."""
    level = logging.getLevelNamesMapping()[level_name.upper()]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s novabridge emulator %(levelname)s: %(message)s"))
    logging.basicConfig(level=level if level == logging.DEBUG else max(level, logging.WARNING), handlers=[handler])
    logging.getLogger("novabridge.emulator").setLevel(level)


async def _serve_emulator(args: argparse.Namespace) -> int:
    from novabridge.emulator import Emulator, EmulatorOptions, Fault, Scenario, ScenarioError, published
    from novabridge.memory import map_large_blocks

    _log_to_stderr("error" if args.quiet else args.log_level)
    map_large_blocks()  # a server that runs for hours in its own process (novabridge.memory)

    overrides = {
        "endpointing_s": args.endpointing,
        "session_limit_s": args.session_limit,
        "input_timeout_s": args.input_timeout,
        "silence_limit_s": args.silence_limit,
        "think_s": args.think,
        "output_speed": args.speed,
        "max_streams": args.max_streams,
        "credentials": args.credentials,
        "credentials_file": args.credentials_file,
        "region": args.region,
        "models": args.models,
        "denied_models": frozenset(args.deny_model) or None,
        "extra_models": dict(args.serve_model) or None,
    }
    if args.credentials_expire_in is not None:
        overrides["credentials_expire_at"] = time.time() + args.credentials_expire_in
    try:
        options = EmulatorOptions(**{k: v for k, v in overrides.items() if v is not None})
        scenario = Scenario.load(args.scenario) if args.scenario else Scenario()
        faults = [Fault.parse(spec) for spec in args.fault]
        emulator = Emulator(
            host=args.host,
            port=args.port,
            scenario=scenario,
            options=options,
            faults=faults,
            allow_remote=args.allow_remote,
            record_dir=args.record_dir,
            keep_recordings=False,  # nobody reads them in this process; --record-dir writes them out
            certs_dir=args.certs_dir,
        )
    except (ValueError, ScenarioError) as error:
        print(f"novabridge emulator: {error}", file=sys.stderr)
        return 2

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    def arm(line: str) -> None:
        try:
            fault = emulator.inject(Fault.parse(line))
            print(json.dumps({"armed": fault.kind.value, "count": fault.count}), flush=True)
        except ValueError as error:
            print(json.dumps({"error": str(error)}), flush=True)

    def read_stdin() -> None:
        # A thread, because stdin may be a pipe, a file or /dev/null, and a partial line must not stall the loop.
        for line in sys.stdin:
            if line.strip():
                loop.call_soon_threadsafe(arm, line.strip())

    async with emulator:
        if not args.no_state:
            state_file = published.publish(args.state_dir, emulator.endpoint_uri, emulator.ca_file)
            print(f"novabridge emulator: {emulator.endpoint_uri}, published in {state_file}", file=sys.stderr)
        try:
            print(json.dumps({"endpoint_uri": emulator.endpoint_uri, "ca_file": emulator.ca_file}), flush=True)
            if sys.stdin is not None and not sys.stdin.closed and not sys.stdin.isatty():
                threading.Thread(target=read_stdin, name="stdin-faults", daemon=True).start()
            await stop.wait()
        finally:
            if not args.no_state:
                published.withdraw(args.state_dir)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    if args.command == "emulator":
        reason = _emulator_unavailable()
        if reason is not None:
            return _emulator_elsewhere(args, argv, reason)
        return asyncio.run(_serve_emulator(args))
    if args.command in ("demo", "chat"):
        from novabridge import demo

        return demo.run(
            out_dir=args.out,
            worker_python=args.worker_python,
            aws=args.aws,
            input_wav=getattr(args, "input", None),
            output_wav=getattr(args, "output", None),
        )
    if args.command == "setup-worker":
        from novabridge import setup_worker

        return setup_worker.main(args.dir or setup_worker.DEFAULT_DIR, args.python, args.wheel)
    if args.command == "doctor":
        from novabridge import doctor

        if args.ca_file is not None and args.endpoint_uri is None:
            print("novabridge doctor: --ca-file goes with --endpoint-uri", file=sys.stderr)
            return 2
        target: doctor.Target | None = "emulator" if args.emulator else "aws" if args.aws else None
        return doctor.main(
            doctor.DoctorOptions(
                target=target,
                endpoint_uri=args.endpoint_uri,
                ca_file=args.ca_file,
                state_dir=args.state_dir,
                worker_python=args.worker_python,
                region=args.region,
                profile=args.profile,
            )
        )
    if args.command in ("openavatarchat", "oac"):
        from novabridge.openavatarchat import install

        return install.main(args.oac_dir, worker_python=args.worker_python, emulator=args.emulator, force=args.force)
    raise AssertionError(args.command)  # argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
