// ChatServer's voice-note page. Plain JavaScript, no framework and no build step.
//
// Every URL is relative ("transcribe", not "/transcribe"), so the page works at "/" on
// uvicorn and under an API Gateway stage ("/Prod/"). The API key, when the server asks for
// one, is kept in sessionStorage: this tab only, gone when it closes.
"use strict";

const KEY_STORAGE = "chatserver.apiKey";
const POLL_MS = 1000;
// A job still unfinished after this long is left to the user (the job id is shown).
const POLL_LIMIT_MS = 2 * 60 * 60 * 1000;
const $ = (id) => document.getElementById(id);

const ui = {
  language: $("language"),
  translate: $("translate"),
  record: $("record"),
  recordLabel: $("record-label"),
  live: $("live"),
  elapsed: $("elapsed"),
  level: $("level"),
  file: $("file"),
  limits: $("limits"),
  status: $("status"),
  progress: $("progress"),
  error: $("error"),
  errorText: $("error-text"),
  retry: $("retry"),
  transcript: $("transcript"),
  details: $("details"),
  outLanguage: $("out-language"),
  outDuration: $("out-duration"),
  outTime: $("out-time"),
  copy: $("copy"),
  keyDialog: $("key-dialog"),
  keyInput: $("api-key"),
};

let config = null;
let languageNames = new Map();
let retryAction = null;
let busy = false;

// --- formatting -------------------------------------------------------------------------------
function formatSeconds(seconds) {
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const whole = Math.round(seconds);
  return `${Math.floor(whole / 60)} min ${String(whole % 60).padStart(2, "0")} s`;
}

function formatLimitSeconds(seconds) {
  return seconds >= 120 && seconds % 60 === 0 ? `${seconds / 60} minutes` : `${seconds} seconds`;
}

function formatBytes(bytes) {
  if (bytes >= 1024 * 1024 * 1024) return `${(bytes / 1024 ** 3).toFixed(1)} GB`;
  if (bytes >= 1024 * 1024) return `${(bytes / 1024 ** 2).toFixed(1)} MB`;
  return `${Math.ceil(bytes / 1024)} KB`;
}

function clock(seconds) {
  const whole = Math.floor(seconds);
  return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}`;
}

function languageLabel(code) {
  const name = languageNames.get(code);
  if (!name) return code || "unknown";
  return `${name[0].toUpperCase()}${name.slice(1)} (${code})`;
}

// --- what the page shows ------------------------------------------------------------------------
function setStatus(text) {
  ui.status.textContent = text;
}

function showError(text, retry = null) {
  ui.errorText.textContent = text;
  ui.error.hidden = false;
  retryAction = retry;
  ui.retry.hidden = retry === null;
  setStatus("");
  ui.progress.hidden = true;
}

function clearOutput() {
  ui.error.hidden = true;
  ui.retry.hidden = true;
  retryAction = null;
  ui.transcript.textContent = "";
  ui.details.hidden = true;
  ui.copy.hidden = true;
  ui.progress.hidden = true;
}

function showResult({ text, language, duration, seconds }) {
  ui.transcript.textContent = text.trim() || "(no speech was found in this recording)";
  ui.transcript.lang = language || "";
  const chosen = ui.language.value;
  ui.outLanguage.textContent = chosen
    ? `${languageLabel(language)}, as chosen`
    : `${languageLabel(language)}, detected`;
  ui.outDuration.textContent = formatSeconds(duration);
  ui.outTime.textContent = formatSeconds(seconds);
  ui.details.hidden = false;
  ui.copy.hidden = !text.trim();
  setStatus("Done.");
}

function setBusy(on) {
  busy = on;
  ui.file.disabled = on;
  if (!recorder) ui.record.disabled = on;
  $("dictate").disabled = on;
}

// --- talking to the server -----------------------------------------------------------------------
function askForKey() {
  return new Promise((resolve) => {
    ui.keyInput.value = "";
    ui.keyDialog.addEventListener(
      "close",
      () => {
        const key = ui.keyInput.value.trim();
        resolve(ui.keyDialog.returnValue === "ok" && key ? key : null);
      },
      { once: true },
    );
    ui.keyDialog.showModal();
    ui.keyInput.focus();
  });
}

class NeedsKey extends Error {}

// A call to this server (never to S3): with the key when there is one; on a 401 it asks for
// a key once, keeps it for the tab, and sends the request again.
async function api(path, options = {}) {
  for (let attempt = 0; attempt < 3; attempt += 1) {
    const headers = new Headers(options.headers || {});
    const key = sessionStorage.getItem(KEY_STORAGE);
    if (key) headers.set("Authorization", `Bearer ${key}`);
    const response = await fetch(path, { ...options, headers });
    if (response.status !== 401) return response;
    sessionStorage.removeItem(KEY_STORAGE);
    const entered = await askForKey();
    if (entered === null) throw new NeedsKey();
    sessionStorage.setItem(KEY_STORAGE, entered);
  }
  throw new NeedsKey();
}

async function errorOf(response) {
  // The app's errors are {"error": {"type", "message"}}; API Gateway's own are {"message"}.
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const error = (body && body.error) || {};
  return {
    status: response.status,
    type: error.type || "",
    message: error.message || (body && body.message) || "",
    requestId: error.request_id || response.headers.get("X-Request-ID") || "",
    retryAfter: Number(response.headers.get("Retry-After")) || 0,
  };
}

function describe(error) {
  const { status, type, message, requestId, retryAfter } = error;
  if (status === 503 || type === "server_busy") {
    const wait = retryAfter ? ` in ${retryAfter} seconds` : " in a moment";
    return `The server is busy with other recordings right now. Please try again${wait}.`;
  }
  if (type === "unsupported_media" || status === 415) {
    return "This file is not a recording ChatServer can read. Choose an audio file: " +
      "WEBM, OGG, M4A, MP3, WAV or FLAC.";
  }
  if (type === "empty_file") return "The recording is empty. Record again, a little longer.";
  if (type === "audio_too_long") {
    return `The recording is too long: the limit here is ${formatLimitSeconds(config.max_audio_seconds)}.` +
      (config.jobs_enabled ? "" : " Split it into shorter parts.");
  }
  if (type === "file_too_large" || status === 413) {
    return `The file is too large: the limit here is ${formatBytes(config.max_upload_bytes)}.`;
  }
  if (type === "decode_timeout") return "The recording took too long to read. Try a shorter one.";
  if (status === 401) return "This server needs an API key. Reload the page to enter one.";
  if (status >= 400 && status < 500 && message) return message; // the server's words say what to fix
  const id = requestId ? ` (request ${requestId})` : "";
  return `Something went wrong on the server${id}. Please try again.`;
}

function failed(error, retry) {
  if (error instanceof NeedsKey) {
    showError("This server needs an API key, and none was given.", retry);
  } else if (error instanceof TypeError) {
    showError("The server could not be reached. Check the connection and try again.", retry);
  } else {
    showError(`Something went wrong: ${error.message}`, retry);
  }
}

// --- one recording, synchronously or as a job -------------------------------------------------
async function audioSeconds(blob) {
  // The browser reads the duration from the container; a MediaRecorder WEBM has none
  // (Infinity), and then the server decides.
  const url = URL.createObjectURL(blob);
  try {
    return await new Promise((resolve) => {
      const audio = new Audio();
      const done = (value) => {
        audio.removeAttribute("src");
        resolve(value);
      };
      audio.preload = "metadata";
      audio.onloadedmetadata = () => done(Number.isFinite(audio.duration) ? audio.duration : null);
      audio.onerror = () => done(null);
      setTimeout(() => done(null), 3000);
      audio.src = url;
    });
  } finally {
    URL.revokeObjectURL(url);
  }
}

async function submit(blob, filename, knownSeconds = null) {
  clearOutput();
  setBusy(true);
  const retry = () => submit(blob, filename, knownSeconds);
  try {
    const seconds = knownSeconds ?? (await audioSeconds(blob));
    const tooBig = blob.size > config.max_upload_bytes;
    const tooLong = seconds !== null && seconds > config.max_audio_seconds + 1;
    if (tooBig || tooLong) {
      if (config.jobs_enabled) {
        await submitJob(blob, filename, retry);
      } else {
        showError(
          tooBig
            ? `The file is too large: the limit here is ${formatBytes(config.max_upload_bytes)}.`
            : `The recording is too long: the limit here is ${formatLimitSeconds(config.max_audio_seconds)}.`,
        );
      }
      return;
    }
    await transcribe(blob, filename, retry);
  } catch (error) {
    failed(error, retry);
  } finally {
    setBusy(false);
  }
}

async function transcribe(blob, filename, retry) {
  const form = new FormData();
  form.append("file", blob, filename);
  if (ui.language.value) form.append("language", ui.language.value);
  if (ui.translate.checked) form.append("task", "translate");
  setStatus("Transcribing…");
  const started = performance.now();
  const response = await api("transcribe", { method: "POST", body: form });
  if (response.ok) {
    const body = await response.json();
    showResult({
      text: body.transcript,
      language: body.language,
      duration: body.duration,
      seconds: (performance.now() - started) / 1000,
    });
    return;
  }
  const error = await errorOf(response);
  if (config.jobs_enabled && (error.type === "audio_too_long" || error.type === "file_too_large")) {
    await submitJob(blob, filename, retry); // over the synchronous limits: the S3 path takes it
    return;
  }
  showError(describe(error), error.status === 503 || error.status >= 500 ? retry : null);
}

async function submitJob(blob, filename, retry) {
  if (config.max_job_upload_bytes && blob.size > config.max_job_upload_bytes) {
    showError(`The file is too large: the limit for long recordings is ${formatBytes(config.max_job_upload_bytes)}.`);
    return;
  }
  setStatus("This recording is long: sending it as a job…");
  const form = new FormData();
  if (ui.language.value) form.append("language", ui.language.value);
  const created = await api("jobs", { method: "POST", body: form });
  if (!created.ok) {
    const error = await errorOf(created);
    showError(describe(error), error.status >= 500 ? retry : null);
    return;
  }
  const job = await created.json();
  // The presigned POST goes straight to S3: every field as given, the file last, and no
  // Authorization header (S3 would refuse it; the policy is the credential).
  const upload = new FormData();
  for (const [name, value] of Object.entries(job.upload.fields)) upload.append(name, value);
  upload.append("file", blob, filename);
  ui.progress.hidden = false;
  ui.progress.removeAttribute("value"); // indeterminate while uploading
  setStatus("Uploading…");
  const uploaded = await fetch(job.upload.url, { method: "POST", body: upload });
  if (!uploaded.ok) {
    showError("The upload to storage was refused. Please try again.", retry);
    return;
  }
  const started = performance.now();
  setStatus("Uploaded. Waiting for the transcription to start…");
  await pollJob(job.job_id, started, retry);
}

async function pollJob(jobId, started, retry) {
  // Relative, so it stays under the stage (the job's status_url is absolute).
  const path = `jobs/${jobId.split("/").map(encodeURIComponent).join("/")}`;
  const deadline = performance.now() + POLL_LIMIT_MS;
  while (performance.now() < deadline) {
    const response = await api(path);
    if (!response.ok) {
      const error = await errorOf(response);
      if (error.status >= 500) {
        await new Promise((resolve) => setTimeout(resolve, POLL_MS * 3));
        continue;
      }
      showError(describe(error), retry);
      return;
    }
    const doc = await response.json();
    if (doc.status === "processing") {
      const fraction = Math.max(0, Math.min(1, doc.progress || 0));
      ui.progress.value = fraction;
      setStatus(`Transcribing… ${Math.round(fraction * 100)}%`);
    } else if (doc.status === "completed") {
      ui.progress.value = 1;
      showResult({
        text: doc.text,
        language: doc.language,
        duration: doc.duration,
        seconds: doc.processing_seconds ?? (performance.now() - started) / 1000,
      });
      return;
    } else if (doc.status === "failed") {
      ui.progress.hidden = true;
      showError(describe({ status: 400, type: doc.error.type, message: doc.error.message }));
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
  showError(`The job is taking very long. Its id is ${jobId}; check on it later.`);
}

// --- the microphone -----------------------------------------------------------------------------
let recorder = null;

function microphoneError(error) {
  switch (error && error.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "The browser did not allow the microphone. Allow it for this page in the " +
        "site settings, then press Record again; or choose a recording instead.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No microphone was found. Connect one, or choose a recording instead.";
    case "NotReadableError":
      return "The microphone is in use by another program. Close it, then try again.";
    default:
      return `The microphone could not be started (${(error && error.message) || error}).`;
  }
}

function pickMimeType() {
  for (const type of ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/webm", "audio/mp4"]) {
    if (window.MediaRecorder && MediaRecorder.isTypeSupported(type)) return type;
  }
  return "";
}

async function startRecording() {
  clearOutput();
  if (!navigator.mediaDevices || !window.MediaRecorder) {
    showError("This browser cannot record here (recording needs https or localhost). Choose a recording instead.");
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (error) {
    showError(microphoneError(error));
    return;
  }
  const mimeType = pickMimeType();
  const chunks = [];
  const media = new MediaRecorder(stream, mimeType ? { mimeType } : {});
  const context = new AudioContext();
  const analyser = context.createAnalyser();
  analyser.fftSize = 1024;
  context.createMediaStreamSource(stream).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  const startedAt = performance.now();
  let frame = 0;

  const tick = () => {
    analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const sample of samples) sum += sample * sample;
    // RMS on a rough log scale, so that speech moves the meter visibly.
    const rms = Math.sqrt(sum / samples.length);
    ui.level.value = Math.min(1, Math.max(0, 1 + Math.log10(rms + 1e-4) / 3));
    ui.elapsed.textContent = clock((performance.now() - startedAt) / 1000);
    frame = requestAnimationFrame(tick);
  };
  // requestAnimationFrame stops in a background tab; the clock still moves.
  const timer = setInterval(() => {
    ui.elapsed.textContent = clock((performance.now() - startedAt) / 1000);
  }, 500);

  media.ondataavailable = (event) => {
    if (event.data.size) chunks.push(event.data);
  };
  media.onstop = () => {
    cancelAnimationFrame(frame);
    clearInterval(timer);
    for (const track of stream.getTracks()) track.stop();
    context.close();
    recorder = null;
    $("dictate").disabled = false;
    ui.live.hidden = true;
    ui.level.value = 0;
    ui.record.setAttribute("aria-pressed", "false");
    ui.recordLabel.textContent = "Record";
    const type = media.mimeType || mimeType || "audio/webm";
    const extension = type.includes("ogg") ? "ogg" : type.includes("mp4") ? "m4a" : "webm";
    const blob = new Blob(chunks, { type });
    const seconds = (performance.now() - startedAt) / 1000;
    if (!blob.size) {
      showError("Nothing was recorded. Check the microphone, then try again.");
      return;
    }
    submit(blob, `voice-note.${extension}`, seconds);
  };

  recorder = media;
  $("dictate").disabled = true; // one microphone use at a time
  media.start(1000);
  ui.elapsed.textContent = "0:00";
  ui.live.hidden = false;
  ui.record.setAttribute("aria-pressed", "true");
  ui.recordLabel.textContent = "Stop";
  setStatus("Recording…");
  tick();
}

// --- start-up -------------------------------------------------------------------------------------
async function loadConfig() {
  const response = await fetch("config");
  if (!response.ok) throw new Error(`the server's settings could not be read (HTTP ${response.status})`);
  config = await response.json();
  for (const { code, name } of config.languages) {
    languageNames.set(code, name);
    const option = document.createElement("option");
    option.value = code;
    option.textContent = `${name[0].toUpperCase()}${name.slice(1)}`;
    ui.language.append(option);
  }
  if (!config.languages.length) languageNames.set("en", "english");
  ui.translate.disabled = !config.translate;
  // Live dictation (live.js), only where the server offers it (not through API Gateway).
  $("dictate").hidden = !config.live;
  $("dictate-help").hidden = !config.live;
  const sync = `Up to ${formatLimitSeconds(config.max_audio_seconds)} and ${formatBytes(config.max_upload_bytes)}`;
  ui.limits.textContent = config.jobs_enabled
    ? `${sync} at once; longer recordings (up to ${formatLimitSeconds(config.max_job_audio_seconds)}) are sent as a job.`
    : `${sync} per recording.`;
}

ui.record.addEventListener("click", () => {
  if (recorder) {
    recorder.stop();
  } else if (!busy) {
    startRecording();
  }
});

ui.file.addEventListener("change", () => {
  const [file] = ui.file.files;
  if (file) submit(file, file.name);
});

ui.retry.addEventListener("click", () => {
  if (retryAction) retryAction();
});

ui.copy.addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText(ui.transcript.textContent);
    setStatus("Copied to the clipboard.");
  } catch {
    // No clipboard permission: select the text so that Ctrl+C copies it.
    const range = document.createRange();
    range.selectNodeContents(ui.transcript);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    setStatus("Select and copy the text with Ctrl+C.");
  }
});

loadConfig().catch((error) => {
  ui.record.disabled = true;
  ui.file.disabled = true;
  showError(`The page could not start: ${error.message}.`, () => location.reload());
});
