// Live dictation's capture (live.js loads it with audioWorklet.addModule): the microphone as
// PCM16 mono at 24 kHz, little-endian, posted to the page in pieces of 100 ms.
//
// The page asks for an AudioContext at 24 kHz, so the browser resamples the microphone and
// this only converts floats to 16-bit. Where a browser cannot run the context at 24 kHz with
// this microphone (it then runs at the device's rate), samples are interpolated linearly
// to 24 kHz here: enough for speech, which holds little above 8 kHz.
"use strict";

class Pcm16Capture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const target = (options.processorOptions && options.processorOptions.targetRate) || 24000;
    this.step = sampleRate / target; // input samples per output sample
    this.position = 0; // where the next output sample lies, in this block's input samples
    this.previous = 0; // the last input sample of the block before
    this.chunk = new Int16Array(Math.round(target / 10));
    this.filled = 0;
    this.port.onmessage = (event) => {
      if (event.data === "flush") this.send(this.filled);
    };
  }

  push(sample) {
    const clamped = Math.max(-1, Math.min(1, sample));
    this.chunk[this.filled] = clamped < 0 ? clamped * 0x8000 : clamped * 0x7fff;
    this.filled += 1;
    if (this.filled === this.chunk.length) this.send(this.filled);
  }

  send(count) {
    if (!count) return;
    const piece = this.chunk.slice(0, count);
    this.port.postMessage(piece.buffer, [piece.buffer]);
    this.filled = 0;
  }

  process(inputs) {
    const input = inputs[0] && inputs[0][0];
    if (!input || !input.length) return true;
    if (this.step === 1) {
      for (let i = 0; i < input.length; i += 1) this.push(input[i]);
      return true;
    }
    for (;;) {
      const index = Math.floor(this.position);
      if (index + 1 >= input.length) break;
      const before = index < 0 ? this.previous : input[index];
      this.push(before + (input[index + 1] - before) * (this.position - index));
      this.position += this.step;
    }
    this.position -= input.length;
    this.previous = input[input.length - 1];
    return true;
  }
}

registerProcessor("pcm16-capture", Pcm16Capture);
