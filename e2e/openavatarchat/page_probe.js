// Injected into OpenAvatarChat's page before its own scripts (playwright's add_init_script). It leaves the page as
// it is and records, on the page's clock (performance.now(), ms, with performance.timeOrigin to put it on the wall
// clock), what a user would hear and say:
//   mic:    the RMS of the microphone track the page sends, every 10 ms;
//   heard:  the RMS of the remote stream's audio, with whether the page's <video> element (which plays it) is
//           playing: audio counts as heard only while it is;
//   texts:  what arrives on the page's data channels;
//   jitter: the browser's audio jitter buffer every 500 ms (its cumulative delay and target delay in seconds and
//           the samples they cover: differences give the delay over each interval);
//   events: peer connection and media element milestones.
(() => {
  const log = { timeOrigin: performance.timeOrigin, mic: [], heard: [], texts: [], events: [], jitter: [] };
  window.__novabridgeProbe = log;
  const now = () => performance.now();
  let audioContext = null;
  const context = () => (audioContext = audioContext || new AudioContext());

  function meter(track, sample) {
    const analyser = context().createAnalyser();
    analyser.fftSize = 256; // 5.3 ms at 48 kHz: finer than the 10 ms sampling
    context().createMediaStreamSource(new MediaStream([track])).connect(analyser);
    const buffer = new Float32Array(analyser.fftSize);
    setInterval(() => {
      analyser.getFloatTimeDomainData(buffer);
      let sum = 0;
      for (const x of buffer) sum += x * x;
      sample(Math.sqrt(sum / buffer.length));
    }, 10);
  }

  const NativePeerConnection = window.RTCPeerConnection;
  class ProbedPeerConnection extends NativePeerConnection {
    constructor(...args) {
      super(...args);
      log.events.push([now(), 'peer-connection']);
      this.addEventListener('connectionstatechange', () => log.events.push([now(), 'pc-' + this.connectionState]));
      setInterval(async () => {
        const stats = await this.getStats();
        stats.forEach((r) => {
          if (r.type !== 'inbound-rtp' || r.kind !== 'audio' || !r.jitterBufferEmittedCount) return;
          log.jitter.push([now(), r.jitterBufferDelay, r.jitterBufferTargetDelay, r.jitterBufferEmittedCount]);
        });
      }, 500);
      this.addEventListener('track', (event) => {
        if (event.track.kind !== 'audio') return;
        log.events.push([now(), 'remote-audio-track']);
        meter(event.track, (rms) => {
          const video = [...document.querySelectorAll('video')].find((v) => !v.muted && v.srcObject);
          const playing = video !== undefined && !video.paused && video.readyState >= 2;
          log.heard.push([now(), rms, playing ? 1 : 0]);
        });
      });
    }
    addTrack(track, ...streams) {
      if (track.kind === 'audio') {
        log.events.push([now(), 'mic-track-sent']);
        meter(track, (rms) => log.mic.push([now(), rms]));
      }
      return super.addTrack(track, ...streams);
    }
    createDataChannel(label, options) {
      const channel = super.createDataChannel(label, options);
      channel.addEventListener('message', (m) => log.texts.push([now(), label, String(m.data)]));
      return channel;
    }
  }
  window.RTCPeerConnection = ProbedPeerConnection;
  document.addEventListener('playing', (e) => log.events.push([now(), 'playing ' + (e.target.className || '')]), true);
})();
