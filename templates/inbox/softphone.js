// The agent's softphone: calls ring in the page. With a Twilio account, Twilio's Voice SDK
// (Twilio.Device, vendored from npm and served by us); without one, a simulated device with
// the same interface, fed by the router's simulated calls, so one code path drives both.
// Customer text only ever goes in via textContent.
(function () {
  "use strict";
  const root = document.getElementById("softphone");
  if (!root) return;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const $ = (id) => document.getElementById("softphone-" + id);
  const path = (...parts) => parts.map(encodeURIComponent).join("/");
  const SOUNDS = ["incoming", "outgoing", "disconnect", "dtmf0", "dtmf1", "dtmf2", "dtmf3", "dtmf4", "dtmf5",
    "dtmf6", "dtmf7", "dtmf8", "dtmf9", "dtmfs", "dtmfh"];
  const ENDED = new Set(["completed", "busy", "no-answer", "canceled"]);

  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body || {}),
    });
    if (response.status === 401) { location.assign("/inbox/login"); throw new Error("logged out"); }
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.error || "the router refused (" + response.status + ")");
    return data;
  }

  // --- a device with Twilio.Device's interface over the router's simulated calls ---

  class Emitter {
    constructor() { this._handlers = {}; }
    on(name, handler) { (this._handlers[name] = this._handlers[name] || []).push(handler); return this; }
    emit(name, ...args) { for (const handler of this._handlers[name] || []) handler(...args); }
  }

  class SimulatedCall extends Emitter {
    constructor(device, data) {
      super();
      this._device = device;
      this._status = data.status === "in-progress" ? "open" : "pending";
      this._muted = data.muted === "1";
      this.parameters = { CallSid: data.sid, From: data.from, To: data.to };
      this.customParameters = new Map([["tenant", data.tenant], ["conversation", data.conversation],
        ["customer", data.customer], ["kind", data.kind], ["simulated", "1"], ["whisper", data.whisper || ""]]);
    }
    status() { return this._status; }
    accept() { this._status = "connecting"; this._act("answer"); }
    reject() { this._act("decline"); }
    ignore() { this.reject(); }
    disconnect() { this._act("hangup"); }
    mute(on = true) { this._muted = on; this._act(on ? "mute" : "unmute"); this.emit("mute", on, this); }
    isMuted() { return this._muted; }
    sendDigits(digits) { this._act("digits", { digits: digits }); }
    _act(action, body) {
      this._device._act(this.parameters.CallSid, action, body).catch((error) => this.emit("error", error));
    }
    _update(data) {  // the router's word on the call: what the SDK hears from Twilio
      if (data.status === "in-progress" && this._status !== "open") {
        this._status = "open";
        this.emit("accept", this);
      }
      if ((data.recording || "") !== (this.recording || "")) {  // the router's recording marker
        this.recording = data.recording || "";
        this.emit("recording", this.recording);
      }
      if (ENDED.has(data.status) && this._status !== "closed") {
        const was = this._status;
        this._status = "closed";
        if (was === "open") this.emit("disconnect", this);
        else if (data.hung_up_by === "agent") this.emit("reject");
        else this.emit("cancel");
      }
    }
  }

  class SimulatedDevice extends Emitter {
    constructor(seat) {
      super();
      this._seat = seat;
      this._calls = new Map();
      this._delay = 1000;
      this._socket = null;
      this.state = "unregistered";
    }
    register() {
      const scheme = location.protocol === "https:" ? "wss://" : "ws://";
      const socket = new WebSocket(scheme + location.host + "/inbox/t/" + path(this._seat.tenant) + "/softphone/simulated");
      this._socket = socket;
      socket.onopen = () => { this._delay = 1000; this.state = "registered"; this.emit("registered"); };
      socket.onmessage = (message) => {
        const data = JSON.parse(message.data);
        if (data.kind === "calls") this._sync(data.calls);
      };
      socket.onclose = (closed) => {
        this.state = "unregistered";
        this.emit("unregistered");
        if (closed.code === 4401) { location.href = "/inbox/login"; return; }  // the session ended
        if (this._socket === socket) setTimeout(() => this.register(), this._delay);
        this._delay = Math.min(this._delay * 2, 30000);
      };
      return Promise.resolve();
    }
    updateToken() {}
    destroy() { const socket = this._socket; this._socket = null; if (socket) socket.close(); }
    _sync(list) {
      for (const data of list.slice().reverse()) {  // oldest first
        const known = this._calls.get(data.sid);
        if (known) { known._update(data); continue; }
        if (data.status !== "ringing" && data.status !== "in-progress") continue;  // over before this page
        const call = new SimulatedCall(this, data);
        this._calls.set(data.sid, call);
        this.emit("incoming", call);  // a call in progress outlives a page: it is taken up again
      }
    }
    _act(sid, action, body) {
      return post("/inbox/t/" + path(this._seat.tenant) + "/softphone/simulated/" + path(sid) + "/" + action, body);
    }
  }

  // --- the panel ---

  const ring = new Audio("/inbox/softphone/sounds/incoming.wav");
  ring.loop = true;
  let current = null;  // {seat, call, conversation, answered, held, transferring}
  let clock = null;

  function setStatus(text, state) {
    $("status").textContent = text;
    if (state) root.dataset.state = state;
  }

  function error(text) {
    $("error").textContent = text || "";
    $("error").hidden = !text;
  }

  function show(which) {  // the buttons a call's state offers
    const ringing = which === "ringing", talking = which === "talking" || which === "held";
    // hold and transfer move a caller's call (the router placed the others inside the agent's leg)
    const callers = Boolean(current && current.conversation && current.kind === "call");
    $("answer").hidden = $("decline").hidden = !ringing;
    $("mute").hidden = $("hangup").hidden = $("keypad").hidden = $("keys").hidden = !talking;
    $("hold").hidden = $("transfer").hidden = !talking || !callers;
    // shown while the call is recorded (a simulated call says so; else call.json, asked every few seconds)
    $("record").hidden = !talking || !callers || !current.recording;
    $("consulting").hidden = !talking || !callers || !current.consulting;
    if (current && current.consulting) $("transfer").hidden = true;
    $("mute").disabled = which === "held";
    for (const key of $("keypad").querySelectorAll("button")) key.disabled = which === "held";
    $("customer-hangup").hidden = !(talking || ringing) || !current || !current.simulated;
  }

  function timer(start) {
    clearInterval(clock);
    const draw = () => {
      const seconds = Math.round((Date.now() - start) / 1000);
      $("timer").textContent = Math.floor(seconds / 60) + ":" + String(seconds % 60).padStart(2, "0");
    };
    draw();
    clock = setInterval(draw, 1000);
  }

  function stopRinging() { ring.pause(); ring.currentTime = 0; }

  function ended(text) {
    stopRinging();
    $("listeners").hidden = true;
    clearInterval(clock);
    setStatus(text, "idle");
    show("idle");
    current = null;
  }

  function talking() {
    stopRinging();
    current.answered = true;
    setStatus(current.held ? gettext("on hold") : gettext("in call"), current.held ? "held" : "talking");
    show(current.held ? "held" : "talking");
    if (!current.since) { current.since = Date.now(); timer(current.since); }
  }

  function drawRecording(state) {
    if (!current) return;
    current.recording = state;
    $("record").setAttribute("aria-pressed", String(state === "paused"));
    $("record").textContent = state === "paused" ? "Resume recording" : "Pause recording";
    if (current.answered) show(current.held ? "held" : "talking");
  }

  function bind(seat, call, info) {
    current = { seat: seat, call: call, since: 0, recording: call.recording || "", consulting: false, ...info };
    const kind = info.kind;
    $("call").hidden = false;
    $("who").textContent = info.customer;
    $("kind").textContent = (kind === "callback" ? gettext("callback") : kind === "dial" ? gettext("your call")
      : gettext("incoming call")) + " · " + seat.tenant_name + (info.simulated ? " · " + gettext("simulated") : "") +
      // a caller's call is screened: the agent hears (here, reads) the whisper and presses 1 to take it
      (info.whisper ? " · " + info.whisper : "");
    $("digits").textContent = "";
    $("timer").textContent = "";
    $("mute").setAttribute("aria-pressed", "false");
    $("hold").setAttribute("aria-pressed", "false");
    $("hold").textContent = gettext("Hold");
    const open = $("open");
    open.hidden = !current.conversation;
    if (current.conversation) open.href = "/inbox/t/" + path(seat.tenant) + "/c/" + path(current.conversation);
    $("target").replaceChildren(...seat.targets.map((t) => {
      const option = document.createElement("option");
      option.value = t.value;
      option.textContent = t.label;
      return option;
    }));
    error("");
    attach(call);
  }

  function attach(call) {
    call.on("accept", () => { if (current && current.call === call) talking(); });
    call.on("disconnect", () => {
      if (!current || current.call !== call) return;
      // Transferring a caller ends the agent's leg: not the end of the call. (Holding keeps the
      // agent in the caller's conference, so a disconnect while held is the end.)
      if (current.transferring) { ended(gettext("transferred")); return; }
      ended(gettext("call ended"));
    });
    call.on("cancel", () => { if (current && current.call === call) ended(gettext("missed: the caller hung up")); });
    call.on("reject", () => { if (current && current.call === call) ended(gettext("declined")); });
    call.on("mute", (muted) => $("mute").setAttribute("aria-pressed", String(muted)));
    call.on("recording", (state) => { if (current && current.call === call) drawRecording(state); });
    call.on("error", (e) => error(e.message || String(e)));
  }

  // Which conversation and customer a call is for: a <Client> dial and a simulated call say
  // so; Twilio rings a call the router placed (a callback, the agent's own) without, so ask.
  async function detailsOf(seat, call) {
    const p = call.customParameters;
    const info = { conversation: p.get("conversation") || "", customer: p.get("customer") || "",
      kind: p.get("kind") || "", simulated: Boolean(p.get("simulated")), whisper: p.get("whisper") || "" };
    if (!info.conversation && seat.mode === "twilio") {
      try {
        Object.assign(info, await post("/inbox/t/" + path(seat.tenant) + "/softphone/placed",
          { call: call.parameters.CallSid }));
      } catch (e) { /* not a call the router placed for this agent: shown by its number */ }
    }
    info.customer = info.customer || call.parameters.From || "";
    return info;
  }

  async function incoming(seat, call) {
    const info = await detailsOf(seat, call);
    if (call.status() === "closed") return;  // gone while we asked
    const conversation = info.conversation;
    if (current && current.conversation === conversation && conversation && current.call.status() === "closed") {
      // Twilio: holding a caller ended the agent's leg, and resuming dials the agent again; take it up
      current.call = call;
      attach(call);
      call.accept();
      return;
    }
    if (current && current.call.status() !== "closed") { call.reject(); return; }  // one call at a time
    bind(seat, call, info);
    if (call.status() === "open") { talking(); return; }  // already answered (before this page)
    setStatus(gettext("ringing"), "ringing");
    show("ringing");
    ring.play().catch(() => {});  // the browser may refuse sound before the first click
    $("answer").focus();
  }

  async function holdOrResume() {
    const on = !current.held;
    try {
      await post("/inbox/t/" + path(current.seat.tenant) + "/softphone/hold",
        { conversation: current.conversation, call: current.call.parameters.CallSid, on: on });
    } catch (e) { error(e.message); return; }
    current.held = on;
    $("hold").setAttribute("aria-pressed", String(on));
    $("hold").textContent = on ? gettext("Resume") : gettext("Hold");
    talking();
  }

  async function transfer(event) {
    event.preventDefault();
    current.transferring = true;
    try {
      await post("/inbox/t/" + path(current.seat.tenant) + "/softphone/transfer", {
        conversation: current.conversation, call: current.call.parameters.CallSid, target: $("target").value,
      });
    } catch (e) { current.transferring = false; error(e.message); return; }
    if (current && current.call.status() === "closed") ended("transferred");
  }

  // during a caller's call: who else is on it (a supervisor listening), and its recording
  async function pollCall() {
    if (!current || !current.answered || current.kind !== "call" || !current.conversation) return;
    const call = current;
    const response = await fetch("/inbox/t/" + path(call.seat.tenant) + "/c/" + path(call.conversation) +
      "/call.json", { credentials: "same-origin" });
    if (!response.ok || current !== call) return;
    const data = await response.json();
    $("listeners").textContent = data.listeners ? "On this call: " + data.listeners : "";
    $("listeners").hidden = !data.listeners;
    if (data.recording !== call.recording) drawRecording(data.recording);
  }
  setInterval(() => pollCall().catch(() => {}), 4000);

  // pause the recording while a card number is read out (the router asks Twilio)
  async function pauseOrResumeRecording() {
    const paused = current.recording !== "paused";
    try {
      const data = await post("/inbox/t/" + path(current.seat.tenant) + "/c/" + path(current.conversation) +
        "/recording", { paused: paused });
      drawRecording(data.recording);
    } catch (e) { error(e.message); }
  }

  // warm transfer: the caller is held while the colleague is called in; then hand over or go back
  async function callTransfer(action) {
    if (action === "handover") current.transferring = true;
    try {
      await post("/inbox/t/" + path(current.seat.tenant) + "/c/" + path(current.conversation) + "/call/transfer",
        { action: action, target: $("target").value });
    } catch (e) { current.transferring = false; error(e.message); return; }
    error("");
    current.consulting = action === "consult";
    current.held = action === "consult";
    $("hold").setAttribute("aria-pressed", String(current.held));
    $("hold").textContent = current.held ? "Resume" : "Hold";
    if (action === "handover" && current.call.status() === "closed") { ended("transferred"); return; }
    talking();
  }

  $("answer").addEventListener("click", () => { if (current) { stopRinging(); current.call.accept(); } });
  $("decline").addEventListener("click", () => { if (current) current.call.reject(); });
  $("hangup").addEventListener("click", () => {
    if (!current) return;
    if (current.call.status() !== "closed") { current.call.disconnect(); return; }
    // Twilio: holding the caller ended the agent's leg; the router ends the caller's
    post("/inbox/t/" + path(current.seat.tenant) + "/softphone/hangup",
      { conversation: current.conversation, call: current.call.parameters.CallSid })
      .then(() => ended(gettext("call ended")), (e) => error(e.message));
  });
  $("mute").addEventListener("click", () => { if (current) current.call.mute(!current.call.isMuted()); });
  $("hold").addEventListener("click", () => { if (current) holdOrResume(); });
  $("transfer").addEventListener("submit", (event) => { if (current) transfer(event); });
  $("record").addEventListener("click", () => { if (current) pauseOrResumeRecording(); });
  $("consult").addEventListener("click", () => { if (current) callTransfer("consult"); });
  $("handover").addEventListener("click", () => { if (current) callTransfer("handover"); });
  $("back").addEventListener("click", () => { if (current) callTransfer("cancel"); });
  $("keypad").addEventListener("click", (event) => {
    const key = event.target.closest("button[data-digit]");
    if (!key || !current) return;
    current.call.sendDigits(key.dataset.digit);
    $("digits").textContent += key.dataset.digit;
  });
  $("customer-hangup").addEventListener("click", () => {
    if (current) current.call._act("customer-hangup");  // only a simulated call has a customer to play
  });

  // --- devices, one per seat ---

  function loadSdk() {
    return new Promise((resolve, reject) => {
      if (window.Twilio && window.Twilio.Device) { resolve(); return; }
      const script = document.createElement("script");
      script.src = "/inbox/static/vendor/twilio.min.js";
      script.onload = () => resolve();
      script.onerror = () => reject(new Error("the softphone's SDK did not load"));
      document.head.append(script);
    });
  }

  async function twilioDevice(seat) {
    const token = async () => (await post("/inbox/t/" + path(seat.tenant) + "/softphone/token")).token;
    await loadSdk();
    const device = new window.Twilio.Device(await token(), {
      closeProtection: true,  // leaving the page during a call asks first: the call ends with it
      codecPreferences: ["opus", "pcmu"],
      sounds: Object.fromEntries(SOUNDS.map((name) => [name, "/inbox/softphone/sounds/" + name + ".wav"])),
    });
    try { device.audio.incoming(false); } catch (e) { /* older SDK: it rings too */ }  // the panel rings
    device.on("tokenWillExpire", async () => device.updateToken(await token()));
    return device;
  }

  async function start(seat) {
    const device = seat.mode === "twilio" ? await twilioDevice(seat) : new SimulatedDevice(seat);
    device.on("registered", () => { if (!current) setStatus(gettext("ready"), "idle"); });
    device.on("unregistered", () => { if (!current) setStatus(gettext("reconnecting…"), "idle"); });
    device.on("error", (e) => {
      error(e.message || String(e));
      if (!current && device.state !== "registered") setStatus(gettext("not connected"), "idle");
    });
    device.on("incoming", (call) => { incoming(seat, call).catch((e) => error(e.message || String(e))); });
    await device.register();
    return device;
  }

  async function main() {
    const { seats } = await post("/inbox/softphone/seats");
    const usable = seats.filter((seat) => seat.mode !== "unavailable" && !seat.has_phone);
    const notes = [...new Set(seats.map((seat) => seat.has_phone ? "" : seat.note).filter(Boolean))];
    if (!usable.length && !notes.length) return;  // calls ring the agent's own phone
    root.hidden = false;
    $("note").textContent = notes.join(" · ");
    $("note").hidden = !notes.length;
    show("idle");
    if (!usable.length) { setStatus(gettext("off")); return; }
    for (const seat of usable) {
      start(seat).catch((e) => { setStatus(gettext("off")); error(e.message || String(e)); });
    }
  }

  main().catch((e) => { root.hidden = false; setStatus(gettext("off")); error(e.message || String(e)); });
})();
