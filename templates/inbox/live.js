// The inbox's live connection, shared by its pages. The page never looks live when it
// is not: a dropped socket shows "Reconnecting…" (the #live-status region, said by
// screen readers too), recovers by itself with backoff, and resyncs the page when it is
// back; a socket that goes quiet past a few of the server's beats is taken for dead; an
// ended session (the socket's 4401, or any 401) goes to the login, which returns here.
// A page script calls InboxLive.start({onEvent, onResync}); onResync may return a promise.
(function () {
  "use strict";
  const FIRST_DELAY_MS = 1000;
  const MAX_DELAY_MS = 5000;  // a restarted web process: the page is current again within seconds
  const OPEN_TIMEOUT_MS = 10000;  // a handshake that neither opens nor fails
  const BEATS_MISSED = 3;  // quiet this many beats: the connection died without closing

  const region = document.getElementById("live-status");
  let handlers = { onEvent() {}, onResync() {} };
  let socket = null;
  let attempt = 0;
  let beatMs = 10000;
  let deadline = null;
  let retryTimer = null;
  let countdown = null;
  let wasLive = false;
  let leaving = false;
  let backTimer = null;

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // --- what the banner says ---

  function say(state, message, retry) {
    document.body.dataset.live = state === "live" || state === "back" ? "on" : state;
    if (!region) return;
    clearTimeout(backTimer);
    if (state === "live") { region.replaceChildren(); return; }
    const banner = el("div", { class: "live-banner live-" + state });
    banner.append(el("strong", {}, message));
    if (retry) {
      banner.append(" ", el("span", { class: "live-countdown", "aria-hidden": "true" }));
      const button = el("button", { type: "button", class: "live-retry" }, gettext("Retry now"));
      button.addEventListener("click", () => retryNow());
      banner.append(" ", button);
    }
    region.replaceChildren(banner);
    if (state === "back") backTimer = setTimeout(() => region.replaceChildren(), 4000);
  }

  function showCountdown(at) {
    clearInterval(countdown);
    const update = () => {
      const node = region && region.querySelector(".live-countdown");
      if (node) node.textContent = gettext("(next try in %(n)s s)", { n: Math.max(0, Math.ceil((at - Date.now()) / 1000)) });
    };
    update();
    countdown = setInterval(update, 1000);
  }

  // --- the session ---

  function loginUrl() {
    const params = new URLSearchParams(location.search);
    params.delete("done");  // said once already
    const query = params.toString();
    const here = location.pathname + (query ? "?" + query : "");
    return "/inbox/login" + (here === "/inbox" ? "" : "?next=" + encodeURIComponent(here));
  }

  function toLogin() {
    if (leaving) return;
    leaving = true;
    stopSocket();
    document.dispatchEvent(new CustomEvent("inbox:leaving"));  // the reply box keeps its draft
    say("ended", gettext("Your session has ended: going to the login page…"));
    location.assign(loginUrl());
  }

  // A script's request: 401 means the session is gone (never a redirect to follow).
  async function fetchJSON(url) {
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (response.status === 401) { toLogin(); throw new Error("session ended"); }
    if (!response.ok) throw new Error(url + " answered " + response.status);
    return response.json();
  }

  // --- the socket ---

  function stopSocket() {
    clearTimeout(deadline);
    if (!socket) return;
    const old = socket;
    socket = null;
    old.onopen = old.onmessage = old.onclose = old.onerror = null;
    try { old.close(); } catch (e) { /* already closed */ }
  }

  function expectWithin(ms) {
    clearTimeout(deadline);
    deadline = setTimeout(() => { stopSocket(); down(); }, ms);
  }

  function open() {
    stopSocket();
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const current = new WebSocket(scheme + location.host + "/inbox/live");
    socket = current;
    expectWithin(OPEN_TIMEOUT_MS);
    current.onmessage = (message) => {
      expectWithin(beatMs * BEATS_MISSED);
      let event;
      try { event = JSON.parse(message.data); } catch (e) { return; }
      if (event.kind === "hello") { hello(event); return; }
      if (event.kind === "beat") return;
      if (event.kind === "session_ended") { toLogin(); return; }
      handlers.onEvent(event);
    };
    current.onclose = (closed) => {
      if (socket !== current) return;
      socket = null;
      clearTimeout(deadline);
      if (closed.code === 4401) { toLogin(); return; }  // the session ended
      down();
    };
  }

  function hello(event) {
    beatMs = Math.max(1000, (Number(event.beat_s) || 10) * 1000);
    expectWithin(beatMs * BEATS_MISSED);
    const recovered = wasLive || attempt > 0;
    attempt = 0;
    wasLive = true;
    clearInterval(countdown);
    // what happened while the socket was away: the page asks for everything again
    Promise.resolve()
      .then(() => handlers.onResync(event))
      .then(() => say(recovered ? "back" : "live", gettext("Connected again: the page is up to date.")))
      .catch(() => say(recovered ? "back" : "live", gettext("Connected again.")));
  }

  function down() {
    if (leaving) return;
    if (!navigator.onLine) {
      say("offline", gettext("You are offline: this page is not up to date. It updates when the network is back."));
      return;  // the browser's "online" event tries again
    }
    attempt += 1;
    const delay = Math.min(FIRST_DELAY_MS * 2 ** (attempt - 1), MAX_DELAY_MS) * (0.8 + Math.random() * 0.4);
    say("reconnecting", gettext("Reconnecting… this page may not be up to date."), true);
    const at = Date.now() + delay;
    showCountdown(at);
    clearTimeout(retryTimer);
    retryTimer = setTimeout(retry, delay);
  }

  // Before a new socket: is the session still there? (A socket refused for want of one
  // only tells a script that it closed.)
  async function retry() {
    clearTimeout(retryTimer);
    if (leaving) return;
    let response;
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), OPEN_TIMEOUT_MS);  // a hung connection is a failed try
    try {
      response = await fetch("/inbox/session.json",
        { credentials: "same-origin", headers: { Accept: "application/json" }, signal: abort.signal });
    } catch (e) {
      down();  // the web process is not answering (yet)
      return;
    } finally {
      clearTimeout(timer);
    }
    if (response.status === 401) { toLogin(); return; }
    if (!response.ok) { down(); return; }
    open();
  }

  function retryNow() {
    clearInterval(countdown);
    say("reconnecting", gettext("Reconnecting… this page may not be up to date."));
    retry();
  }

  window.addEventListener("offline", () => { if (!leaving) { stopSocket(); down(); } });
  window.addEventListener("online", () => { if (!leaving && !socket) retryNow(); });
  document.addEventListener("visibilitychange", () => {
    // back from a sleeping laptop: do not wait out the backoff
    if (document.visibilityState === "visible" && !leaving && !socket && wasLive) retryNow();
  });
  window.addEventListener("pagehide", () => { leaving = true; stopSocket(); });  // leaving: no banner
  window.addEventListener("pageshow", (shown) => {  // back from the browser's page cache
    if (shown.persisted) { leaving = false; retryNow(); }
  });

  window.InboxLive = {
    start(given) {
      handlers = Object.assign({ onEvent() {}, onResync() {} }, given);
      open();
    },
    fetchJSON,
    toLogin,
  };
})();
