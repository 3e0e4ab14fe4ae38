/* Contact router web chat widget. Embed with one tag:
 *   <script src="https://ROUTER/webchat/TENANT/widget.js" async></script>
 * An identified customer: add data-customer-email (or data-customer-id) and
 * data-customer-signature (hex HMAC-SHA256 of "email:<address>" or "id:<id>"
 * with the tenant's identity secret, computed by the tenant's own server).
 *
 * Plain JavaScript, no build step. Everything lives in a shadow root, and every
 * text a visitor or an agent wrote is put on the page with textContent, never as HTML.
 */
(function () {
  "use strict";
  var CONFIG = {{ config|tojson }};
  // The widget's fixed words in the visitor's language (router/locale, picked by the browser's
  // Accept-Language when it fetched this script); a word without a translation stays as written.
  var TEXTS = {{ texts|tojson }};
  function gettext(message) { return TEXTS[message] || message; }
  var script = document.currentScript;
  var marker = "__contactrouterWebchat_" + CONFIG.tenant;
  if (!script || window[marker]) return;
  window[marker] = true;

  var source = new URL(script.src, location.href);
  var httpBase = source.origin + "/webchat/" + encodeURIComponent(CONFIG.tenant);
  var socketUrl = (source.protocol === "https:" ? "wss://" : "ws://") + source.host +
    "/webchat/" + encodeURIComponent(CONFIG.tenant) + "/socket";
  var tokenKey = "contactrouter-webchat:" + CONFIG.tenant + ":token";
  var openKey = "contactrouter-webchat:" + CONFIG.tenant + ":open";
  var data = script.dataset || {};
  var identity = null;
  if (data.customerSignature && (data.customerEmail || data.customerId)) {
    identity = {
      kind: data.customerEmail ? "email" : "id",
      value: data.customerEmail || data.customerId,
      signature: data.customerSignature
    };
  }

  function stored(storage, key, value) {
    // Storage can be refused (private modes, blocked third-party storage): the chat still works.
    try {
      if (value === undefined) return storage.getItem(key);
      if (value === null) storage.removeItem(key); else storage.setItem(key, value);
    } catch (e) { /* not kept */ }
    return null;
  }

  function randomId() {
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function paperclip() {
    // drawn, not a glyph: an emoji needs a font the visitor's system may not have
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("width", "20");
    svg.setAttribute("height", "20");
    var path = document.createElementNS(ns, "path");
    path.setAttribute("d", "M16.5 6.5l-7.8 7.8a2 2 0 0 0 2.8 2.8l8.1-8.1a4 4 0 0 0-5.7-5.7l-8.4 8.4a6 6 0 0 0 8.5 8.5l7.3-7.3");
    path.setAttribute("fill", "none");
    path.setAttribute("stroke", "#4b5563");
    path.setAttribute("stroke-width", "2");
    path.setAttribute("stroke-linecap", "round");
    svg.appendChild(path);
    return svg;
  }

  function pageShown() {
    // where the visitor is, for the agent; never the query or fragment, which may hold a site's tokens
    return location.origin + location.pathname;
  }

  function siteAllowed() {
    var origin = location.origin.toLowerCase();
    return CONFIG.allowedOrigins.indexOf(origin) >= 0 ||
      (CONFIG.demoPage && origin === source.origin.toLowerCase());
  }

  function size(bytes) {
    return bytes >= 1048576 ? (bytes / 1048576).toFixed(1) + " MB" : Math.max(1, Math.round(bytes / 1024)) + " kB";
  }

  // --- the page: a launcher and a panel in a shadow root ---

  var host = el("div");
  host.id = "contactrouter-webchat-" + CONFIG.tenant;
  var root = host.attachShadow({ mode: "open" });
  host.style.setProperty("--cr-color", CONFIG.color);
  host.style.setProperty("--cr-text", CONFIG.textColor);
  var css = [
    ":host { all: initial; }",
    ".launcher { position: fixed; right: 20px; bottom: 20px; z-index: 2147483000; border: 0; border-radius: 28px;",
    "  padding: 0 20px; height: 56px; background: var(--cr-color); color: var(--cr-text); cursor: pointer;",
    "  font: 600 15px/1 system-ui, sans-serif; box-shadow: 0 4px 14px rgba(0,0,0,.25); }",
    ".badge { display: inline-block; min-width: 18px; margin-left: 8px; padding: 2px 5px; border-radius: 9px;",
    "  background: #fff; color: #b91c1c; font-size: 12px; }",
    ".panel { position: fixed; right: 20px; bottom: 88px; z-index: 2147483000; width: 360px; max-width: calc(100vw - 40px);",
    "  height: 520px; max-height: calc(100vh - 110px); display: flex; flex-direction: column; background: #fff;",
    "  color: #111827; border-radius: 12px; overflow: hidden; box-shadow: 0 8px 30px rgba(0,0,0,.3);",
    "  font: 14px/1.4 system-ui, sans-serif; }",
    ".panel[hidden], [hidden] { display: none !important; }",
    ".head { display: flex; align-items: center; justify-content: space-between; padding: 12px 14px;",
    "  background: var(--cr-color); color: var(--cr-text); font-weight: 600; }",
    ".head button { border: 0; background: transparent; color: inherit; font-size: 20px; cursor: pointer; }",
    ".notice { padding: 8px 14px; background: #fef3c7; color: #78350f; font-size: 13px; }",
    ".log { flex: 1; overflow-y: auto; padding: 12px; display: flex; flex-direction: column; gap: 8px; }",
    ".greeting, .msg { max-width: 85%; padding: 8px 11px; border-radius: 10px; white-space: pre-wrap;",
    "  overflow-wrap: anywhere; }",
    ".greeting, .msg.out { align-self: flex-start; background: #f3f4f6; }",
    ".msg.in { align-self: flex-end; background: var(--cr-color); color: var(--cr-text); }",
    ".who { font-size: 12px; font-weight: 600; margin-bottom: 2px; }",
    ".file { display: block; font-size: 13px; text-decoration: underline dotted; color: inherit; }",
    ".preview { display: block; max-width: 100%; max-height: 200px; border-radius: 6px; margin-top: 4px; }",
    ".state { display: block; font-size: 11px; opacity: .8; margin-top: 3px; }",
    ".msg.failed { outline: 2px solid #dc2626; }",
    ".state button { border: 0; background: transparent; color: inherit; text-decoration: underline; cursor: pointer;",
    "  padding: 0; font: inherit; }",
    ".typing { min-height: 18px; padding: 0 14px; font-size: 12px; color: #6b7280; }",
    "form { display: flex; flex-direction: column; gap: 8px; padding: 12px; border-top: 1px solid #e5e7eb; }",
    "form.composer { flex-direction: row; align-items: flex-end; }",
    "textarea, input, select { font: inherit; padding: 7px 9px; border: 1px solid #d1d5db; border-radius: 8px; }",
    "textarea { flex: 1; resize: none; height: 38px; }",
    "form .hint { font-size: 13px; color: #374151; }",
    "form .error { font-size: 13px; color: #b91c1c; }",
    "button.send { border: 0; border-radius: 8px; padding: 9px 12px; background: var(--cr-color); color: var(--cr-text);",
    "  cursor: pointer; font-weight: 600; }",
    "label.attach { cursor: pointer; padding: 8px 2px; line-height: 0; }",
    "label.attach input { display: none; }",
    // a phone: the panel takes the screen's width and the height the browser's bars leave
    // (dvh), and a 16 px text box, which iOS would otherwise zoom into on focus
    "@media (max-width: 480px) {",
    "  .launcher { right: 12px; bottom: 12px; }",
    "  .panel { left: 8px; right: 8px; bottom: 80px; width: auto; max-width: none;",
    "    max-height: calc(100vh - 96px); max-height: calc(100dvh - 96px); }",
    "  textarea, input, select { font-size: 16px; }",
    "}"
  ].join("\n");
  if (root.adoptedStyleSheets !== undefined && window.CSSStyleSheet && CSSStyleSheet.prototype.replaceSync) {
    // a constructed sheet is not inline style: it works on sites whose CSP forbids style-src 'unsafe-inline'
    var sheet = new CSSStyleSheet();
    sheet.replaceSync(css);
    root.adoptedStyleSheets = [sheet];
  } else {
    var style = el("style");
    style.textContent = css;
    root.appendChild(style);
  }

  var launcher = el("button", "launcher", gettext("Chat"));
  launcher.type = "button";
  launcher.setAttribute("aria-label", gettext("Chat with %(title)s").replace("%(title)s", CONFIG.title));
  var badge = el("span", "badge");
  badge.hidden = true;
  launcher.appendChild(badge);

  var panel = el("div", "panel");
  panel.hidden = true;
  panel.setAttribute("role", "dialog");
  panel.setAttribute("aria-label", CONFIG.title);
  var head = el("div", "head");
  head.appendChild(el("span", "title", CONFIG.title));
  var closeButton = el("button", "", "\u00d7");
  closeButton.type = "button";
  closeButton.setAttribute("aria-label", gettext("Close the chat"));
  head.appendChild(closeButton);
  var notice = el("div", "notice");
  notice.hidden = true;
  var log = el("div", "log");
  log.setAttribute("role", "log");
  log.setAttribute("aria-live", "polite");
  log.appendChild(el("div", "greeting", CONFIG.greeting));
  var typing = el("div", "typing");

  // the composer
  var composer = el("form", "composer");
  var input = el("textarea");
  input.placeholder = gettext("Write a message\u2026");
  input.setAttribute("aria-label", gettext("Message"));
  var attach = el("label", "attach");
  attach.title = gettext("Send a file");
  attach.appendChild(paperclip());
  var fileInput = el("input");
  fileInput.type = "file";
  fileInput.setAttribute("aria-label", gettext("Send a file"));  // a label element may not carry aria-label (axe)
  fileInput.accept = CONFIG.uploadTypes.join(",");
  attach.appendChild(fileInput);
  var sendButton = el("button", "send", gettext("Send"));
  sendButton.type = "submit";
  composer.appendChild(input);
  if (CONFIG.uploadTypes.length) composer.appendChild(attach);
  composer.appendChild(sendButton);

  // the pre-chat questions
  var prechat = el("form", "prechat");
  prechat.hidden = true;
  prechat.appendChild(el("div", "hint", gettext("Before we start, tell us a little about you.")));
  var prechatInputs = {};
  CONFIG.prechat.forEach(function (name) {
    var field;
    var required = CONFIG.required.indexOf(name) >= 0;
    var label = { name: gettext("Your name"), email: gettext("Your email"), topic: gettext("Topic") }[name] + (required ? " *" : "");
    if (name === "topic") {
      field = el("select");
      field.appendChild(el("option", "", gettext("Choose a topic")));
      field.firstChild.value = "";
      CONFIG.topics.forEach(function (topic) {
        var option = el("option", "", topic);
        option.value = topic;
        field.appendChild(option);
      });
    } else {
      field = el("input");
      field.type = name === "email" ? "email" : "text";
      field.placeholder = label;
    }
    field.name = name;
    field.setAttribute("aria-label", label);
    prechatInputs[name] = field;
    prechat.appendChild(field);
  });
  var prechatError = el("div", "error");
  var prechatButton = el("button", "send", gettext("Start chatting"));
  prechatButton.type = "submit";
  prechat.appendChild(prechatError);
  prechat.appendChild(prechatButton);

  // the offline form
  var offline = el("form", "offline");
  offline.hidden = true;
  var offlineText = el("div", "hint", CONFIG.offlineMessage);
  var offlineName = el("input");
  offlineName.placeholder = gettext("Your name");
  offlineName.setAttribute("aria-label", gettext("Your name"));
  var offlineEmail = el("input");
  offlineEmail.type = "email";
  offlineEmail.placeholder = gettext("Your email");
  offlineEmail.setAttribute("aria-label", gettext("Your email"));
  var offlineMessage = el("textarea");
  offlineMessage.placeholder = gettext("Your message");
  offlineMessage.setAttribute("aria-label", gettext("Your message"));
  offlineMessage.style.height = "90px";
  var offlineError = el("div", "error");
  var offlineButton = el("button", "send", gettext("Send"));
  offlineButton.type = "submit";
  [offlineText, offlineName, offlineEmail, offlineMessage, offlineError, offlineButton].forEach(function (node) {
    offline.appendChild(node);
  });

  [head, notice, log, typing, prechat, offline, composer].forEach(function (node) { panel.appendChild(node); });
  root.appendChild(panel);
  root.appendChild(launcher);

  // --- state ---

  var ws = null;
  var connected = false;
  var everConnected = false;
  var failures = 0;
  var stopped = false;
  var retryTimer = null;
  var token = stored(localStorage, tokenKey);
  var shown = {};          // message id -> bubble
  var pending = [];        // messages not yet acknowledged: {id, text, bubble}
  var agentRead = "";
  var lastOut = "";
  var readSent = "";       // the newest agent message this tab told the inbox it has read
  var unread = 0;
  var view = "chat";
  var offlineReason = "";
  var typingSentAt = 0;
  var typingIdle = null;
  var agentTypingTimer = null;

  function say(text) { notice.textContent = text; notice.hidden = !text; }

  function show(name) {
    view = name;
    composer.hidden = name !== "chat";
    prechat.hidden = name !== "prechat";
    offline.hidden = name !== "offline";
    typing.hidden = name !== "chat";
  }

  function showOffline(reason) {
    offlineReason = reason;
    if (!siteAllowed()) {
      say(gettext("Chat is not available on this site."));
      show("none");
      return;
    }
    offlineText.textContent = reason || CONFIG.offlineMessage;
    show("offline");
  }

  function setState(bubble, text, retry) {
    var stateLine = bubble.querySelector(".state");
    if (!stateLine) {
      stateLine = el("span", "state");
      bubble.appendChild(stateLine);
    }
    stateLine.textContent = text;
    bubble.classList.toggle("failed", !!retry);
    if (retry) {
      var again = el("button", "", gettext("Retry"));
      again.type = "button";
      again.addEventListener("click", retry);
      stateLine.appendChild(document.createTextNode(" "));
      stateLine.appendChild(again);
    }
    if (!text && !retry) stateLine.remove();
  }

  function bubbleFor(item) {
    var bubble = el("div", "msg " + item.kind);
    if (item.kind === "out") bubble.appendChild(el("div", "who", item.agent || CONFIG.title));
    if (item.text) bubble.appendChild(el("div", "text", item.text));
    (item.files || []).forEach(function (file) { bubble.appendChild(fileView(file)); });
    return bubble;
  }

  var PREVIEWED = ["image/png", "image/jpeg", "image/gif", "image/webp"];
  var LINKS_EVERY_MS = 20 * 60 * 1000;  // file links live an hour: an open tab asks for fresh ones

  function fileView(file) {
    // A file with a link (signed by the server for this visitor, short-lived) can be opened;
    // an image shows a preview. One still uploading has no link yet.
    var label = "File: " + file.name + " (" + size(file.size) + ")";
    if (!file.link) return el("span", "file", label);
    var link = el("a", "file");
    link.href = httpBase + "/files/" + encodeURIComponent(file.link);
    link.target = "_blank";
    link.rel = "noopener noreferrer";
    if (PREVIEWED.indexOf(file.content_type) >= 0) {
      var image = el("img", "preview");
      image.src = link.href;
      image.alt = file.name;
      link.appendChild(image);
    }
    link.appendChild(document.createTextNode(label));
    return link;
  }

  function scrollDown() { log.scrollTop = log.scrollHeight; }

  function showMessage(item) {
    if (shown[item.id]) return;
    var waiting = null;
    for (var i = 0; i < pending.length; i++) {
      if (pending[i].id === item.client_id) { waiting = pending[i]; pending.splice(i, 1); break; }
    }
    var bubble = bubbleFor(item);
    bubble.dataset.id = item.id;
    if (waiting) log.replaceChild(bubble, waiting.bubble); else log.appendChild(bubble);
    if (waiting) setState(bubble, gettext("Sent"));
    shown[item.id] = bubble;
    if (item.kind === "out") {
      lastOut = item.id > lastOut ? item.id : lastOut;
      typing.textContent = "";
      if (panel.hidden || document.hidden) { unread += 1; badge.textContent = String(unread); badge.hidden = false; }
    }
    markRead();
    scrollDown();
  }

  function markRead() {
    // The visitor's messages the agents have read: the newest of them says so.
    var newest = null;
    Object.keys(shown).forEach(function (id) {
      var bubble = shown[id];
      if (bubble.classList.contains("in")) {
        var label = bubble.querySelector(".state");
        if (label && label.textContent === gettext("Read")) setState(bubble, "");
        if (agentRead && id <= agentRead && (!newest || id > newest.dataset.id)) newest = bubble;
      }
    });
    if (newest) setState(newest, gettext("Read"));
    if (!panel.hidden && !document.hidden && lastOut > readSent && connected) {
      readSent = lastOut;
      send({ type: "read", up_to: lastOut });
    }
  }

  function send(frame) {
    if (ws && connected) ws.send(JSON.stringify(frame));
  }

{% include "webchat/survey.js" %}

  // --- the socket ---

  function connect() {
    if (ws || stopped) return;
    clearTimeout(retryTimer);
    var socket;
    try {
      socket = new WebSocket(socketUrl);
    } catch (e) {
      failed();
      return;
    }
    ws = socket;
    socket.onopen = function () {
      socket.send(JSON.stringify({ type: "hello", token: identity ? null : token, identity: identity, page: pageShown(),
        language: navigator.language || "" }));
    };
    socket.onmessage = function (event) {
      var frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      handle(frame);
    };
    socket.onclose = function () {
      var wasConnected = connected;
      ws = null;
      connected = false;
      if (wasConnected) say("Reconnecting\u2026");
      failed();
    };
  }

  function failed() {
    if (stopped) return;
    failures += 1;
    if (!siteAllowed() && !everConnected) {
      stopped = true;  // the server refuses this page; trying again changes nothing
      showOffline("");
      return;
    }
    if (!everConnected && failures >= 2 && view !== "offline") {
      showOffline(gettext("We can't reach the chat right now. Leave your email and a message, and we will write back."));
    }
    var delay = Math.min(30000, 1000 * Math.pow(2, Math.min(failures - 1, 5))) * (0.8 + Math.random() * 0.4);
    retryTimer = setTimeout(connect, delay);
  }

  function handle(frame) {
    if (frame.type === "welcome") {
      connected = true;
      everConnected = true;
      failures = 0;
      say("");
      token = frame.token;
      if (!identity) stored(localStorage, tokenKey, token);
      agentRead = frame.agent_read || "";
      frame.history.forEach(function (item) { if (!showSurveyItem(item)) showMessage(item); });
      if (!frame.open) showOffline(CONFIG.offlineMessage);
      else if (!frame.prechat_done && !Object.keys(shown).length) show("prechat");
      else if (view !== "offline" || !offlineMessage.value) show("chat");
      pending.slice().forEach(resend);
      markRead();
    } else if (frame.type === "message") {
      showMessage(frame);
    } else if (frame.type === "survey" || frame.type === "rated") {
      showSurveyItem(frame);
    } else if (frame.type === "ack") {
      pending.forEach(function (p) { if (p.id === frame.id) setState(p.bubble, gettext("Sent")); });
    } else if (frame.type === "typing") {
      clearTimeout(agentTypingTimer);
      typing.textContent = frame.active ? gettext("%(name)s is typing\u2026").replace("%(name)s", frame.agent || CONFIG.title) : "";
      agentTypingTimer = setTimeout(function () { typing.textContent = ""; }, 8000);
    } else if (frame.type === "read") {
      agentRead = frame.up_to > agentRead ? frame.up_to : agentRead;
      markRead();
    } else if (frame.type === "links") {
      frame.items.forEach(function (item) {
        var bubble = shown[item.id];
        if (!bubble) return;
        var old = bubble.querySelectorAll(".file");
        item.files.forEach(function (file, i) { if (old[i]) bubble.replaceChild(fileView(file), old[i]); });
      });
    } else if (frame.type === "prechat_ok") {
      prechatError.textContent = "";
      show("chat");
      pending.slice().forEach(resend);
      input.focus();
    } else if (frame.type === "error") {
      refused(frame);
    }
  }

  function refused(frame) {
    var waiting = pending.filter(function (p) { return frame.id && p.id === frame.id; })[0];
    if (frame.code === "bad_token" || frame.code === "token_expired") {
      token = null;
      stored(localStorage, tokenKey, null);
      failures = 0;
      retryTimer = setTimeout(connect, 100);  // starts afresh as a new visitor
    } else if (frame.code === "identity_refused") {
      stopped = true;
      say(gettext("We could not confirm who you are. Please sign in again."));
    } else if (frame.code === "closed" && waiting) {
      pending.splice(pending.indexOf(waiting), 1);
      waiting.bubble.remove();
      if (!offlineMessage.value) offlineMessage.value = waiting.text;  // what they wrote is kept
      showOffline(frame.message);
    } else if (frame.code === "prechat_required") {
      show("prechat");
      if (waiting) setState(waiting.bubble, gettext("Waiting for your answers"));
    } else if (frame.code === "survey_closed") {
      surveyClosed(frame);
    } else if (frame.code === "prechat_invalid") {
      prechatError.textContent = frame.message;
    } else if (waiting) {
      var again = function () { resend(waiting); };
      var why = frame.code === "rate_limited" ? gettext("Not sent: you are sending too fast.") : gettext("Not sent:") + " " + frame.message;
      setState(waiting.bubble, why, frame.code === "too_large" ? null : again);
      if (frame.code === "too_large") {
        pending.splice(pending.indexOf(waiting), 1);
        if (!input.value) input.value = waiting.text;  // back in the box to shorten
      }
    } else {
      say(frame.message);
    }
  }

  function resend(item) {
    if (!connected || item.file) return;
    setState(item.bubble, gettext("Sending\u2026"));
    send({ type: "message", id: item.id, text: item.text });
  }

  // --- what the visitor does ---

  composer.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text) return;
    var bytes = new TextEncoder().encode(text).length;
    if (bytes > CONFIG.messageBytes) {
      say("That message is too long (" + bytes + " of " + CONFIG.messageBytes + " bytes). Please shorten it.");
      return;
    }
    say("");
    var item = { id: randomId(), text: text, bubble: bubbleFor({ kind: "in", text: text }) };
    pending.push(item);
    log.appendChild(item.bubble);
    scrollDown();
    input.value = "";
    setState(item.bubble, connected ? "Sending\u2026" : "Waiting for the connection\u2026");
    resend(item);
    sendTyping(false);
  });

  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      composer.requestSubmit();
    }
  });

  function sendTyping(active) {
    clearTimeout(typingIdle);
    if (active) {
      if (Date.now() - typingSentAt > 3000) { typingSentAt = Date.now(); send({ type: "typing", active: true }); }
      typingIdle = setTimeout(function () { sendTyping(false); }, 4000);
    } else if (typingSentAt) {
      typingSentAt = 0;
      send({ type: "typing", active: false });
    }
  }
  input.addEventListener("input", function () { sendTyping(!!input.value); });

  fileInput.addEventListener("change", function () {
    var file = fileInput.files[0];
    fileInput.value = "";
    if (!file) return;
    if (CONFIG.uploadTypes.indexOf(file.type) < 0) {
      say(gettext("This kind of file cannot be sent here."));
      return;
    }
    if (file.size > CONFIG.uploadMaxBytes) {
      say("That file is too large (the limit is " + size(CONFIG.uploadMaxBytes) + ").");
      return;
    }
    var item = { id: randomId(), file: file, bubble: bubbleFor({ kind: "in", files: [{ name: file.name, size: file.size }] }) };
    pending.push(item);
    log.appendChild(item.bubble);
    scrollDown();
    upload(item);
  });

  function upload(item) {
    setState(item.bubble, gettext("Uploading\u2026"));
    var body = new FormData();
    body.append("token", token || "");
    body.append("id", item.id);
    body.append("file", item.file, item.file.name);
    fetch(httpBase + "/upload", { method: "POST", body: body }).then(function (response) {
      return response.json().then(function (answer) {
        if (!answer.ok) throw new Error(answer.message);
        setState(item.bubble, gettext("Sent"));
      });
    }).catch(function (error) {
      setState(item.bubble, gettext("Not sent:") + " " + (error.message || gettext("the upload failed")), function () { upload(item); });
    });
  }

  prechat.addEventListener("submit", function (event) {
    event.preventDefault();
    var fields = {};
    Object.keys(prechatInputs).forEach(function (name) { fields[name] = prechatInputs[name].value.trim(); });
    if (!connected) { prechatError.textContent = gettext("Connecting\u2026 please try again in a moment."); return; }
    send({ type: "prechat", fields: fields });
  });

  offline.addEventListener("submit", function (event) {
    event.preventDefault();
    offlineError.textContent = "";
    var form = { id: offline.dataset.id || randomId(), name: offlineName.value.trim(),
      email: offlineEmail.value.trim(), message: offlineMessage.value.trim() };
    offline.dataset.id = form.id;  // a resubmission of the same form is one message
    if (!form.email || !form.message) { offlineError.textContent = gettext("Please give your email and a message."); return; }
    offlineButton.disabled = true;
    fetch(httpBase + "/offline", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(form)
    }).then(function (response) {
      return response.json().then(function (answer) {
        if (!answer.ok) throw new Error(answer.message);
        offline.reset();
        delete offline.dataset.id;
        show("none");
        say(gettext("Thank you! We will answer by email."));
      });
    }).catch(function (error) {
      offlineError.textContent = gettext("Not sent:") + " " + (error.message || gettext("please try again"));
    }).then(function () { offlineButton.disabled = false; });
  });

  function openPanel() {
    panel.hidden = false;
    unread = 0;
    badge.hidden = true;
    stored(sessionStorage, openKey, "1");
    connect();
    markRead();
    if (view === "chat") input.focus();
  }

  launcher.addEventListener("click", function () {
    if (panel.hidden) openPanel(); else { panel.hidden = true; stored(sessionStorage, openKey, null); }
  });
  closeButton.addEventListener("click", function () { panel.hidden = true; stored(sessionStorage, openKey, null); });
  document.addEventListener("visibilitychange", markRead);

  // --- help articles suggested while the visitor types (the knowledge base, router/app/help_centre.py) ---
  // Until an agent has answered, what the visitor writes is looked up (after a pause, at most
  // one request at a time) among the tenant's public articles; each suggestion opens its page
  // and can be marked "This answered my question", which the reports count as a deflected
  // contact. Titles and snippets go in with textContent like everything else here.

  var helpBase = source.origin + "/help/" + encodeURIComponent(CONFIG.tenant);
  var helpBox = el("div", "help");
  helpBox.setAttribute("role", "region");
  helpBox.setAttribute("aria-label", gettext("Help articles"));
  helpBox.hidden = true;
  panel.insertBefore(helpBox, composer);
  if (CONFIG.help) {
    var helpSheet = [
      ".help { border-top: 1px solid #e5e7eb; padding: 8px 12px; max-height: 40%; overflow-y: auto; font-size: 13px; }",
      ".help ul { list-style: none; margin: 4px 0 0; padding: 0; }",
      ".help li { padding: 4px 0; border-bottom: 1px solid #f3f4f6; }",
      ".help a { color: inherit; font-weight: 600; }",
      ".help .snippet { display: block; color: #4b5563; }",
      ".help button { border: 0; background: transparent; color: var(--cr-color); text-decoration: underline;",
      "  cursor: pointer; padding: 0; font: inherit; }"
    ].join("\n");
    if (root.adoptedStyleSheets !== undefined && window.CSSStyleSheet && CSSStyleSheet.prototype.replaceSync) {
      var extra = new CSSStyleSheet();
      extra.replaceSync(helpSheet);
      root.adoptedStyleSheets = root.adoptedStyleSheets.concat([extra]);
    } else {
      var helpStyle = el("style");
      helpStyle.textContent = helpSheet;
      root.appendChild(helpStyle);
    }
  }
  var helpTimer = null;
  var helpAsked = "";
  var HELP_PAUSE_MS = 400;

  function agentAnswered() {
    return Object.keys(shown).some(function (id) { return shown[id].classList.contains("out"); });
  }

  function showHelp(items) {
    helpBox.textContent = "";
    if (!items.length) { helpBox.hidden = true; return; }
    helpBox.appendChild(el("div", "hint", gettext("These articles may answer your question:")));
    var list = el("ul");
    items.forEach(function (item) {
      var row = el("li");
      row.dataset.article = item.id;
      var link = el("a", "", item.title);
      link.href = source.origin + item.url;
      link.target = "_blank";
      link.rel = "noopener";
      link.lang = item.locale;
      row.appendChild(link);
      row.appendChild(el("span", "snippet", item.snippet));
      var yes = el("button", "", gettext("This answered my question"));
      yes.type = "button";
      yes.addEventListener("click", function () { helped(item, row); });
      row.appendChild(yes);
      list.appendChild(row);
    });
    helpBox.appendChild(list);
    helpBox.hidden = false;
  }

  function helped(item, row) {
    fetch(helpBase + "/a/" + encodeURIComponent(item.id) + "/helped", {
      method: "POST", headers: { "Accept": "application/json" }
    }).then(function (response) {
      if (!response.ok) throw new Error("status " + response.status);
      helpBox.textContent = "";
      helpBox.appendChild(el("div", "hint", gettext("Glad it helped! You can still write to us if you need anything else.")));
      input.value = "";
      sendTyping(false);
    }).catch(function () {
      row.appendChild(el("span", "snippet", gettext("Could not record that: please try again.")));
    });
  }

  function suggest() {
    var query = input.value.trim();
    if (!CONFIG.help || agentAnswered() || query.length < 2) { helpAsked = ""; showHelp([]); return; }
    if (query === helpAsked) return;
    helpAsked = query;
    var url = helpBase + "/suggest.json?q=" + encodeURIComponent(query) +
      "&locale=" + encodeURIComponent(navigator.language || "");
    fetch(url).then(function (response) {
      if (!response.ok) throw new Error("status " + response.status);
      return response.json();
    }).then(function (answer) {
      if (helpAsked === query) showHelp(answer.articles);
    }).catch(function () { helpAsked = ""; });  // suggestions are a help, never in the way
  }

  if (CONFIG.help) {
    input.addEventListener("input", function () { clearTimeout(helpTimer); helpTimer = setTimeout(suggest, HELP_PAUSE_MS); });
    composer.addEventListener("submit", function () { clearTimeout(helpTimer); helpAsked = ""; showHelp([]); });
  }

  setInterval(function () { send({ type: "links" }); }, LINKS_EVERY_MS);

  function start() {
    document.body.appendChild(host);
    show("chat");
    if (stored(sessionStorage, openKey) === "1") openPanel();
    else if (token || identity) connect();  // a returning visitor sees replies (and an unread count) at once
  }
  if (document.body) start(); else document.addEventListener("DOMContentLoaded", start);
})();
