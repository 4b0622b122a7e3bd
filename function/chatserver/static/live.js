// Live dictation: the microphone streamed to v1/realtime (OpenAI's Realtime transcription
// protocol) while the user speaks; provisional words shown as they come, each replaced by its
// turn's final text. Loaded after app.js, whose page state and helpers it uses. /config says
// whether the server offers it (not through API Gateway, which cannot hold a WebSocket).
"use strict";

const LIVE_RATE = 24000;
const FINISH_MS = 15000; // after Stop, how long the last turn's final text is waited for

const liveUi = {
  button: $("dictate"),
  label: $("dictate-label"),
  help: $("dictate-help"),
};

let dictation = null;

function liveUrl() {
  const url = new URL("v1/realtime?intent=transcription", location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

function base64(buffer) {
  const bytes = new Uint8Array(buffer);
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

// The transcript as turns: each turn's final text (announced by the live region), or while
// it is spoken its provisional words (shown, not announced: they change as it goes).
class LiveTranscript {
  constructor(element) {
    this.element = element;
    this.turns = new Map();
    element.textContent = "";
    element.lang = ui.language.value || "";
  }

  turn(item) {
    if (!this.turns.has(item)) {
      if (this.turns.size) this.element.append(" ");
      const final = document.createElement("span");
      final.className = "final";
      const provisional = document.createElement("span");
      provisional.className = "provisional";
      provisional.setAttribute("aria-hidden", "true");
      this.element.append(final, provisional);
      this.turns.set(item, { final, provisional, done: false });
    }
    return this.turns.get(item);
  }

  delta(item, text) {
    const turn = this.turn(item);
    if (!turn.done) turn.provisional.textContent = (turn.provisional.textContent + text).trimStart();
  }

  completed(item, text) {
    const turn = this.turn(item);
    turn.done = true;
    turn.provisional.textContent = "";
    turn.final.textContent = text.trim();
  }

  failed(item) {
    const turn = this.turn(item);
    turn.done = true;
    turn.provisional.textContent = "";
  }

  pending() {
    return [...this.turns.values()].filter((turn) => !turn.done).length;
  }

  text() {
    return this.element.textContent.trim();
  }
}

function liveErrorText(error) {
  if (error.code === "server_busy") return `The server is busy: ${error.message}`;
  return error.message || "The live transcription failed.";
}

async function startLive() {
  clearOutput();
  if (!navigator.mediaDevices || !window.AudioWorkletNode) {
    showError("This browser cannot stream from the microphone here (it needs https or localhost).");
    return;
  }
  try {
    // With keys on, the key is checked (and asked for) by a plain request first: a refused
    // WebSocket tells the page nothing about why.
    if (config.auth_required) await api("v1/models");
  } catch (error) {
    failed(error, null);
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: true } });
  } catch (error) {
    showError(microphoneError(error));
    return;
  }
  const session = { stream, transcript: new LiveTranscript(ui.transcript), stopping: false, opened: false };
  dictation = session;
  try {
    await openCapture(session);
  } catch (error) {
    stopCapture(session);
    dictation = null;
    showError(`The microphone could not be started (${error.message || error}).`);
    return;
  }
  openSocket(session);
  liveUi.button.setAttribute("aria-pressed", "true");
  liveUi.label.textContent = "Stop";
  ui.record.disabled = true;
  ui.file.disabled = true;
  ui.elapsed.textContent = "0:00";
  ui.live.hidden = false;
  setStatus("Connecting…");
}

async function openCapture(session) {
  let context;
  try {
    context = new AudioContext({ sampleRate: LIVE_RATE });
    session.source = context.createMediaStreamSource(session.stream);
  } catch {
    // A browser that cannot resample this microphone to 24 kHz: the worklet does it.
    if (context) context.close();
    context = new AudioContext();
    session.source = context.createMediaStreamSource(session.stream);
  }
  session.context = context;
  await context.audioWorklet.addModule("static/pcm-worklet.js");
  const node = new AudioWorkletNode(context, "pcm16-capture", {
    processorOptions: { targetRate: LIVE_RATE },
  });
  node.port.onmessage = (event) => sendAudio(session, event.data);
  const analyser = context.createAnalyser();
  analyser.fftSize = 1024;
  const mute = context.createGain();
  mute.gain.value = 0; // the worklet must be pulled by the graph; nothing is played
  session.source.connect(node);
  session.source.connect(analyser);
  node.connect(mute).connect(context.destination);
  session.node = node;
  const samples = new Float32Array(analyser.fftSize);
  const started = performance.now();
  session.timer = setInterval(() => {
    analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const sample of samples) sum += sample * sample;
    ui.level.value = Math.min(1, Math.max(0, 1 + Math.log10(Math.sqrt(sum / samples.length) + 1e-4) / 3));
    ui.elapsed.textContent = clock((performance.now() - started) / 1000);
  }, 100);
}

function sendAudio(session, buffer) {
  if (session.socket && session.socket.readyState === WebSocket.OPEN && session.opened) {
    session.socket.send(JSON.stringify({ type: "input_audio_buffer.append", audio: base64(buffer) }));
  }
}

function openSocket(session) {
  const key = sessionStorage.getItem(KEY_STORAGE);
  const protocols = key ? ["realtime", `openai-insecure-api-key.${key}`] : ["realtime"];
  const socket = new WebSocket(liveUrl(), protocols);
  session.socket = socket;
  socket.onopen = () => {
    const transcription = { model: "whisper-1" };
    if (ui.language.value) transcription.language = ui.language.value;
    socket.send(JSON.stringify({
      type: "session.update",
      session: {
        type: "transcription",
        audio: {
          input: {
            format: { type: "audio/pcm", rate: LIVE_RATE },
            transcription,
            turn_detection: { type: "server_vad", silence_duration_ms: 700 },
          },
        },
      },
    }));
    session.opened = true;
    setStatus("Listening… speak, then press Stop.");
  };
  socket.onmessage = (message) => onLiveEvent(session, JSON.parse(message.data));
  socket.onclose = (event) => onLiveClosed(session, event);
}

function onLiveEvent(session, event) {
  const { transcript } = session;
  switch (event.type) {
    case "input_audio_buffer.speech_started":
      transcript.turn(event.item_id);
      if (!session.stopping) setStatus("Hearing you…");
      break;
    case "input_audio_buffer.speech_stopped":
      if (!session.stopping) setStatus("Listening… speak, then press Stop.");
      break;
    case "input_audio_buffer.committed":
      transcript.turn(event.item_id);
      break;
    case "conversation.item.input_audio_transcription.delta":
      transcript.delta(event.item_id, event.delta || "");
      break;
    case "conversation.item.input_audio_transcription.completed":
      transcript.completed(event.item_id, event.transcript);
      break;
    case "conversation.item.input_audio_transcription.failed":
      transcript.failed(event.item_id);
      break;
    case "error":
      // An empty last commit after Stop is expected: nothing was left to transcribe.
      if (event.error.code !== "input_audio_buffer_commit_empty") {
        ui.errorText.textContent = liveErrorText(event.error);
        ui.error.hidden = false;
      }
      session.commitAnswered = true;
      break;
    default:
      break;
  }
  if (event.type === "input_audio_buffer.committed") session.commitAnswered = true;
  if (session.stopping && session.commitAnswered && transcript.pending() === 0) finishLive(session);
}

function stopCapture(session) {
  clearInterval(session.timer);
  for (const track of session.stream.getTracks()) track.stop();
  if (session.source) session.source.disconnect();
  if (session.context) session.context.close();
  ui.live.hidden = true;
  ui.level.value = 0;
}

function stopLive(session) {
  if (session.stopping) return;
  session.stopping = true;
  liveUi.button.disabled = true;
  setStatus("Finishing the last words…");
  session.node.port.postMessage("flush");
  // The flushed piece arrives as a message; the commit follows it.
  setTimeout(() => {
    stopCapture(session);
    if (session.socket.readyState === WebSocket.OPEN) {
      session.socket.send(JSON.stringify({ type: "input_audio_buffer.commit" }));
    }
    session.finishTimer = setTimeout(() => finishLive(session), FINISH_MS);
  }, 150);
}

function finishLive(session) {
  clearTimeout(session.finishTimer);
  if (session.socket.readyState === WebSocket.OPEN) session.socket.close(1000);
  endLive(session, null);
}

function onLiveClosed(session, event) {
  if (dictation !== session) return;
  let message = null;
  if (!session.opened) {
    message = "Live transcription could not connect to the server. Please try again.";
  } else if (!session.stopping) {
    message = event.code === 1013
      ? "The server has no room for another live session right now. Please try again in a moment."
      : "The live transcription ended. Press Live to start again.";
  }
  endLive(session, message);
}

function endLive(session, message) {
  if (dictation !== session) return;
  dictation = null;
  stopCapture(session);
  liveUi.button.setAttribute("aria-pressed", "false");
  liveUi.button.disabled = false;
  liveUi.label.textContent = "Live";
  ui.record.disabled = false;
  ui.file.disabled = false;
  const text = session.transcript.text();
  ui.copy.hidden = !text;
  if (message) {
    showError(message, () => startLive());
  } else {
    setStatus(text ? "Done." : "No speech was heard.");
  }
}

liveUi.button.addEventListener("click", () => {
  if (dictation) {
    stopLive(dictation);
  } else if (!busy && !recorder) {
    startLive();
  }
});
