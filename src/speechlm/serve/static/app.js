// The speechlm page: microphone or WAV file -> /ws (PCM16 frames), model audio -> speakers,
// live state, transcript and latency. Protocol: docs/serve.md.

const KIND = { HANDSHAKE: 0, AUDIO: 1, TEXT: 2, CONTROL: 3, METADATA: 4, ERROR: 5 };
const $ = (id) => document.getElementById(id);

// What the page measured; the browser test reads it too.
const stats = window.speechlm = {
  state: "disconnected", states: [], framesSent: 0, dropped: 0, audioSamples: 0,
  rtt: [], firstAudio: [], errors: [], handshake: null,
};

let ws = null;
let audio = null;          // { ctx, player, capture }
let source = null;         // { stop() } of the microphone or the file being streamed
let paused = false;
const sentAt = new Map();  // frame index -> performance.now() when sent
let frameIndex = 0;
let endTurnAt = null;      // when end_turn was last sent
let firstAudioAt = null;   // arrival of the first audio since the last metadata
let replying = false;

function log(text, cls) {
  const li = document.createElement("li");
  li.textContent = `${new Date().toLocaleTimeString()}  ${text}`;
  if (cls) li.className = cls;
  $("log").prepend(li);
  while ($("log").children.length > 50) $("log").lastChild.remove();
}

function percentile(values, p) {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

const ms = (v) => (v == null ? "–" : `${v.toFixed(0)} ms`);

function render() {
  const recent = stats.rtt.slice(-200);
  $("rtt-p50").textContent = ms(percentile(recent, 50));
  $("rtt-p95").textContent = ms(percentile(recent, 95));
  $("first-audio").textContent = ms(stats.firstAudio.at(-1));
  $("frames").textContent = `${stats.framesSent} / ${stats.dropped}`;
  const rate = stats.handshake ? stats.handshake.sample_rate : 16000;
  $("received").textContent = `${(stats.audioSamples / rate).toFixed(1)} s`;
}

function setState(state) {
  if (state === stats.state) return;
  stats.state = state;
  stats.states.push(state);
  $("state").textContent = state;
  $("state").className = `badge ${state}`;
  const li = document.createElement("li");
  li.textContent = state;
  $("history").append(li);
  while ($("history").children.length > 12) $("history").firstChild.remove();
  if (state === "interrupted") stopPlayback();
}

function stopPlayback() {
  if (audio) audio.player.port.postMessage("clear");
}

function send(kind, payload) {
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  const body = typeof payload === "string" ? new TextEncoder().encode(payload) : new Uint8Array(payload);
  const message = new Uint8Array(body.length + 1);
  message[0] = kind;
  message.set(body, 1);
  ws.send(message);
}

function control(name) {
  if (name === "end_turn") endTurnAt = performance.now();
  send(KIND.CONTROL, JSON.stringify({ control: name }));
}

function sendFrame(int16Buffer) {
  if (paused) return;
  sentAt.set(frameIndex++, performance.now());
  stats.framesSent += 1;
  send(KIND.AUDIO, int16Buffer);
}

// ---- receiving --------------------------------------------------------------------------------

function onAudio(bytes) {
  if (firstAudioAt === null) firstAudioAt = performance.now();
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let samples = new Float32Array(bytes.byteLength >> 1);
  for (let i = 0; i < samples.length; i++) samples[i] = view.getInt16(2 * i, true) / 32768;
  stats.audioSamples += samples.length;
  const rate = stats.handshake.sample_rate;
  if (audio.ctx.sampleRate !== rate) samples = resampleLinear(samples, rate, audio.ctx.sampleRate);
  audio.player.port.postMessage(samples, [samples.buffer]);
}

function onMetadata(meta) {
  const now = performance.now();
  setState(meta.state);
  stats.dropped = meta.dropped ?? stats.dropped;
  let trigger = null;
  if (meta.frame !== undefined && meta.control === undefined && sentAt.has(meta.frame)) {
    trigger = sentAt.get(meta.frame);
    sentAt.delete(meta.frame);
    stats.rtt.push(now - trigger);
  } else if (meta.control === "end_turn") {
    trigger = endTurnAt;
  }
  for (const old of sentAt.keys()) if (old < (meta.frame ?? 0) - 500) sentAt.delete(old);
  const hasAudio = (meta.audio_samples ?? 0) > 0;
  if (hasAudio && !replying && trigger !== null && firstAudioAt !== null) {
    stats.firstAudio.push(firstAudioAt - trigger);
  }
  if (meta.control === undefined || hasAudio) replying = hasAudio;
  firstAudioAt = null;
  if (meta.compute_ms !== undefined) $("compute").textContent = `${meta.compute_ms.toFixed(1)} ms`;
  for (const event of meta.events ?? []) log(`event: ${event}`);
  if (meta.control) log(`control acknowledged: ${meta.control}`);
}

function onMessage(event) {
  const data = new Uint8Array(event.data);
  const kind = data[0];
  const body = data.subarray(1);
  const text = () => new TextDecoder().decode(body);
  if (kind === KIND.HANDSHAKE) {
    stats.handshake = JSON.parse(text());
    const h = stats.handshake;
    $("model").textContent = `${h.model} · ${h.sample_rate} Hz · ${h.frame_ms} ms frames · session ${h.session}`;
    setState("listening");
    for (const id of ["mic", "file"]) $(id).disabled = false;
    log(`connected (${h.protocol})`);
  } else if (kind === KIND.AUDIO) {
    if (audio) onAudio(body);
  } else if (kind === KIND.TEXT) {
    $("transcript").textContent += text();
  } else if (kind === KIND.METADATA) {
    onMetadata(JSON.parse(text()));
  } else if (kind === KIND.ERROR) {
    stats.errors.push(text());
    log(`error: ${text()}`, "error");
  }
  render();
}

function connect() {
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
  ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  ws.onmessage = onMessage;
  ws.onclose = (event) => {
    log(`disconnected (${event.code}${event.reason ? ": " + event.reason : ""})`, "error");
    stopSource();
    setState("disconnected");
    for (const id of ["mic", "file", "end-turn", "pause", "reset", "stop"]) $(id).disabled = true;
  };
}

// ---- audio in and out -------------------------------------------------------------------------

function resampleLinear(samples, from, to) {
  const out = new Float32Array(Math.round((samples.length * to) / from));
  for (let i = 0; i < out.length; i++) {
    const x = (i * from) / to;
    const j = Math.floor(x);
    const a = samples[j] ?? 0;
    const b = samples[j + 1] ?? a;
    out[i] = a + (b - a) * (x - j);
  }
  return out;
}

async function ensureAudio() {
  if (audio) return audio;
  const rate = stats.handshake.sample_rate;
  let ctx;
  try {
    ctx = new AudioContext({ sampleRate: rate, latencyHint: "interactive" });
  } catch {
    ctx = new AudioContext({ latencyHint: "interactive" });  // the worklet resamples instead
  }
  await ctx.audioWorklet.addModule("/static/worklet.js");
  const player = new AudioWorkletNode(ctx, "player", { numberOfInputs: 0, outputChannelCount: [1] });
  player.connect(ctx.destination);
  const capture = new AudioWorkletNode(ctx, "capture", {
    numberOfOutputs: 0,
    processorOptions: { targetRate: rate, frameSamples: stats.handshake.frame_samples },
  });
  capture.port.onmessage = (event) => sendFrame(event.data);
  audio = { ctx, player, capture };
  await ctx.resume();
  return audio;
}

function started(kind) {
  for (const id of ["end-turn", "pause", "reset", "stop"]) $(id).disabled = false;
  $("mic").disabled = true;
  $("file").disabled = true;
  log(`streaming ${kind}`);
}

async function startMic() {
  const { ctx, capture } = await ensureAudio();
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
  });
  const input = ctx.createMediaStreamSource(stream);
  input.connect(capture);
  source = { stop() { input.disconnect(); stream.getTracks().forEach((t) => t.stop()); } };
  started("microphone");
}

// A WAV (any format the browser decodes) at real-time pace, then silence until Stop, like a
// microphone that went quiet: the model keeps its clock and can answer.
async function startFile(file) {
  await ensureAudio();
  const { sample_rate: rate, frame_samples: n, frame_ms: frameMs } = stats.handshake;
  const decoded = await audio.ctx.decodeAudioData(await file.arrayBuffer());
  const offline = new OfflineAudioContext(1, Math.ceil(decoded.duration * rate), rate);
  const node = offline.createBufferSource();
  node.buffer = decoded;
  node.connect(offline.destination);
  node.start();
  const samples = (await offline.startRendering()).getChannelData(0);
  const frames = Math.ceil(samples.length / n);
  const t0 = performance.now();
  let i = 0;
  let timer = null;
  const tick = () => {
    while (performance.now() >= t0 + i * frameMs) {
      const frame = new Int16Array(n);
      if (i < frames) {
        const chunk = samples.subarray(i * n, (i + 1) * n);
        chunk.forEach((v, k) => { frame[k] = Math.max(-32768, Math.min(32767, Math.round(v * 32767))); });
      }
      sendFrame(frame.buffer);
      if (i === frames - 1) { control("end_turn"); log(`file sent: ${file.name}`); }
      i += 1;
    }
    timer = setTimeout(tick, frameMs / 4);
  };
  tick();
  source = { stop() { clearTimeout(timer); } };
  started(`file ${file.name}`);
}

function stopSource() {
  if (source) source.stop();
  source = null;
  stopPlayback();
}

window.addEventListener("DOMContentLoaded", () => {
  $("mic").onclick = () => startMic().catch((err) => log(`microphone: ${err.message}`, "error"));
  $("file").onchange = (event) => {
    const file = event.target.files[0];
    if (file) startFile(file).catch((err) => log(`file: ${err.message}`, "error"));
  };
  $("end-turn").onclick = () => control("end_turn");
  $("reset").onclick = () => { stopPlayback(); control("reset"); };
  $("pause").onclick = () => {
    paused = !paused;
    control(paused ? "pause" : "start");
    $("pause").textContent = paused ? "Resume" : "Pause";
    if (paused) stopPlayback();
  };
  $("stop").onclick = () => {
    stopSource();
    for (const id of ["end-turn", "pause", "reset", "stop"]) $(id).disabled = true;
    $("mic").disabled = $("file").disabled = false;
    log("stopped");
  };
  connect();
});
