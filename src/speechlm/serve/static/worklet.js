// Audio worklets of the speechlm page: microphone capture (resampled to the server rate and cut
// into frames of PCM16) and playback (a queue of model audio that can be cleared at once).

// Low-pass FIR taps (Hann-windowed sinc) with cutoff `cutoff` (fraction of the input rate).
function lowpass(cutoff, taps) {
  const h = new Float32Array(taps);
  const mid = (taps - 1) / 2;
  let sum = 0;
  for (let i = 0; i < taps; i++) {
    const x = i - mid;
    const sinc = x === 0 ? 2 * cutoff : Math.sin(2 * Math.PI * cutoff * x) / (Math.PI * x);
    h[i] = sinc * (0.5 - 0.5 * Math.cos((2 * Math.PI * i) / (taps - 1)));
    sum += h[i];
  }
  return h.map((v) => v / sum);
}

class Capture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { targetRate, frameSamples } = options.processorOptions;
    this.step = sampleRate / targetRate;          // input samples per output sample
    this.taps = this.step > 1 ? lowpass(0.45 / this.step, 63) : null;  // anti-aliasing
    this.history = new Float32Array(this.taps ? this.taps.length : 1);
    this.filtered = [0, 0];                        // the last two filtered input samples
    this.pos = 0;                                  // next output position, in input samples
    this.index = 0;                                // input samples consumed
    this.frameSamples = frameSamples;
    this.frame = new Int16Array(frameSamples);
    this.fill = 0;
  }

  emit(sample) {
    this.frame[this.fill++] = Math.max(-32768, Math.min(32767, Math.round(sample * 32767)));
    if (this.fill === this.frameSamples) {
      this.port.postMessage(this.frame.buffer, [this.frame.buffer]);  // transferred, not copied
      this.frame = new Int16Array(this.frameSamples);
      this.fill = 0;
    }
  }

  process(inputs) {
    const input = inputs[0] && inputs[0][0];
    if (!input) return true;
    for (let i = 0; i < input.length; i++) {
      let y = input[i];
      if (this.taps) {  // FIR over the last taps.length samples (history is a shift register)
        this.history.copyWithin(0, 1);
        this.history[this.history.length - 1] = y;
        y = 0;
        for (let k = 0; k < this.taps.length; k++) y += this.taps[k] * this.history[k];
      }
      this.filtered = [this.filtered[1], y];
      // emit every output sample that falls between input samples index-1 and index
      while (this.pos <= this.index) {
        const t = this.pos - (this.index - 1);
        this.emit(this.filtered[0] + (this.filtered[1] - this.filtered[0]) * t);
        this.pos += this.step;
      }
      this.index += 1;
    }
    return true;
  }
}

class Player extends AudioWorkletProcessor {
  constructor() {
    super();
    this.queue = [];
    this.offset = 0;   // read position in queue[0]
    this.port.onmessage = (event) => {
      if (event.data === "clear") {
        this.queue = [];
        this.offset = 0;
      } else {
        this.queue.push(event.data);
      }
    };
  }

  process(inputs, outputs) {
    const out = outputs[0][0];
    let i = 0;
    while (i < out.length && this.queue.length) {
      const chunk = this.queue[0];
      const n = Math.min(out.length - i, chunk.length - this.offset);
      out.set(chunk.subarray(this.offset, this.offset + n), i);
      i += n;
      this.offset += n;
      if (this.offset === chunk.length) {
        this.queue.shift();
        this.offset = 0;
      }
    }
    out.fill(0, i);
    return true;
  }
}

registerProcessor("capture", Capture);
registerProcessor("player", Player);
