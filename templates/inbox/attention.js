// What tells an agent that something needs them while they look elsewhere: a short tone
// (made with the Web Audio API: no sound file), a browser notification (once allowed, by
// the "Enable notifications" button: browsers ask only after a click), and a count in the
// tab's title, "(2) Agent inbox": for a new offer, and for a customer's new message in a
// conversation that is not on screen. The page script feeds it its state
// (InboxAttention.update); what was already announced is kept for the tab's session, so
// going from page to page announces nothing twice.
(function () {
  "use strict";
  const SEEN_KEY = "inbox-attention";
  const SOUND_KEY = "inbox-sound";
  const MAX_NOTIFICATIONS = 3;  // a burst after a reconnect: a few, not a wall of them
  const baseTitle = document.title;
  const status = document.getElementById("attention-status");
  let audio = null;
  let pending = 0;  // offers and unread conversations not on screen, by the last state
  let hereUnseen = 0;  // messages in the open conversation while the tab was hidden
  let last = null;

  // --- sound ---

  const Audio = window.AudioContext || window.webkitAudioContext;
  const soundButton = document.getElementById("sound-toggle");
  const soundOn = () => localStorage.getItem(SOUND_KEY) !== "off";

  function drawSoundButton() {
    if (!soundButton || !Audio) return;
    soundButton.hidden = false;
    soundButton.setAttribute("aria-pressed", String(soundOn()));
    soundButton.textContent = soundOn() ? gettext("Sound on") : gettext("Sound off");
  }

  if (soundButton) {
    soundButton.addEventListener("click", () => {
      localStorage.setItem(SOUND_KEY, soundOn() ? "off" : "on");
      drawSoundButton();
      if (soundOn()) tone("message");  // so the agent hears what it sounds like
    });
  }

  function context() {
    if (!Audio) return null;
    if (!audio) audio = new Audio();
    if (audio.state === "suspended") audio.resume().catch(() => {});
    return audio;
  }

  // Browsers let a page play sound only once the user did something on it.
  for (const kind of ["pointerdown", "keydown"]) {
    document.addEventListener(kind, () => { if (audio && audio.state === "suspended") audio.resume().catch(() => {}); },
      { capture: true });
  }

  function tone(kind) {
    if (!soundOn()) return;
    const ctx = context();
    if (!ctx) return;
    // an offer: two rising notes; a message: one softer note
    const notes = kind === "offer" ? [880, 1320] : [660];
    let at = ctx.currentTime + 0.02;
    for (const frequency of notes) {
      const oscillator = ctx.createOscillator();
      const gain = ctx.createGain();
      oscillator.type = "sine";
      oscillator.frequency.value = frequency;
      gain.gain.setValueAtTime(0.0001, at);
      gain.gain.exponentialRampToValueAtTime(kind === "offer" ? 0.25 : 0.15, at + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.3);
      oscillator.connect(gain).connect(ctx.destination);
      oscillator.start(at);
      oscillator.stop(at + 0.32);
      at += 0.16;
    }
  }

  // --- browser notifications ---

  const notifyButton = document.getElementById("notify-enable");
  const canNotify = () => "Notification" in window && Notification.permission === "granted";

  function drawNotifyButton() {
    if (notifyButton) notifyButton.hidden = !("Notification" in window) || Notification.permission !== "default";
  }

  if (notifyButton) {
    notifyButton.addEventListener("click", async () => {
      const answer = await Notification.requestPermission();
      drawNotifyButton();
      announce(answer === "granted" ? gettext("Notifications are on.")
        : gettext("Notifications stay off: the browser did not allow them."));
    });
  }

  function notify(title, body, url, tag) {
    if (!canNotify()) return;
    try {
      const shown = new Notification(title, { body: body, tag: tag });
      shown.onclick = () => {
        window.focus();
        shown.close();
        if (url && location.pathname + location.search !== url) location.assign(url);
      };
    } catch (e) {
      // some browsers (Chrome on Android) only notify through a service worker: the tone and title still do
    }
  }

  // --- what is new ---

  function announce(text) {
    if (status) status.textContent = text;
  }

  function seen() {
    try { return JSON.parse(sessionStorage.getItem(SEEN_KEY)); } catch (e) { return null; }
  }

  function onScreen(c, current) {
    return Boolean(current) && document.visibilityState === "visible" &&
      c.tenant === current.tenant && c.conversation === current.conversation;
  }

  const conversationUrl = (c) => "/inbox/t/" + encodeURIComponent(c.tenant) + "/c/" + encodeURIComponent(c.conversation);

  function alert(items) {
    if (!items.length) return;
    tone(items.some((item) => item.kind === "offer") ? "offer" : "message");
    for (const item of items.slice(0, MAX_NOTIFICATIONS)) {
      const o = item.data;
      if (item.kind === "offer") {
        notify(gettext("New offer: %(who)s", { who: o.customer }), term(o.icon) + " · " + o.tenant_name + (o.preview ? "\n" + o.preview : ""),
          "/inbox", "offer-" + o.reservation);
      } else {
        notify(gettext("New message from %(who)s", { who: o.customer }), o.preview || "", conversationUrl(o), "message-" + o.conversation);
      }
    }
    const offers = items.filter((item) => item.kind === "offer").length;
    const messages = items.length - offers;
    announce([offers ? (offers > 1 ? gettext("%(n)s new offers", { n: offers }) : gettext("1 new offer")) : "",
      messages ? (messages > 1 ? gettext("%(n)s new messages", { n: messages }) : gettext("1 new message")) : ""]
      .filter(Boolean).join(gettext(" and ")) + gettext("."));
  }

  function drawTitle() {
    const count = pending + hereUnseen;
    document.title = (count > 0 ? "(" + count + ") " : "") + baseTitle;
  }

  // state: /inbox/state.json's; current: the conversation on screen ({tenant, conversation}) or null
  function update(state, current) {
    last = { state: state, current: current };
    const before = seen();
    const offers = new Set(before ? before.offers : []);
    const messages = before ? before.messages : {};
    const fresh = [];
    const now = { offers: [], messages: {} };
    for (const o of state.offers) {
      now.offers.push(o.reservation);
      if (!offers.has(o.reservation)) fresh.push({ kind: "offer", data: o });
    }
    for (const c of state.conversations) {
      const key = c.tenant + "/" + c.conversation;
      const at = Number(c.activity_at) || 0;
      now.messages[key] = Math.max(at, messages[key] || 0);
      if (c.unread && at > (messages[key] || 0) && !onScreen(c, current)) fresh.push({ kind: "message", data: c });
    }
    sessionStorage.setItem(SEEN_KEY, JSON.stringify(now));
    if (before) alert(fresh);  // a tab's first look announces nothing: it is all on screen
    pending = state.offers.length + state.conversations.filter((c) => c.unread && !onScreen(c, current)).length;
    drawTitle();
  }

  // A customer's message in the conversation on screen ({tenant, conversation}), while the tab is hidden.
  function messageHere(current, customer, preview) {
    if (document.visibilityState === "visible") return;
    hereUnseen += 1;
    drawTitle();
    alert([{ kind: "message", data: Object.assign({ customer: customer, preview: preview }, current) }]);
  }

  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState !== "visible") return;
    hereUnseen = 0;
    if (last) {
      pending = last.state.offers.length +
        last.state.conversations.filter((c) => c.unread && !onScreen(c, last.current)).length;
    }
    drawTitle();
  });

  drawSoundButton();
  drawNotifyButton();
  window.InboxAttention = { update, messageHere, announce, tone };
})();
