// The agent inbox, live: the socket (live.js) says what changed, the page fetches what it
// may see from its JSON routes and redraws, and everything again when the connection
// comes back. It feeds attention.js its state (offers, unread conversations) and tells
// shortcuts.js what accept, next and previous mean here. Customer text only ever goes
// in via textContent.
(function () {
  "use strict";
  const page = document.currentScript.dataset.page;
  const live = window.InboxLive;
  const attention = window.InboxAttention;
  const shortcuts = window.InboxShortcuts;
  const EXPIRING_S = 10;  // an offer this close to its end says so, and is announced once
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  let skew = Number(document.querySelector('meta[name="server-now"]').content) - Date.now();
  const now = () => Date.now() + skew;

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function postButton(action, label, className) {
    const form = el("form", { method: "post", action: action, class: "inline" });
    form.append(el("input", { type: "hidden", name: "csrf", value: csrf }));
    form.append(el("button", { type: "submit", class: className }, label));
    return form;
  }

  const path = (...parts) => parts.map(encodeURIComponent).join("/");

  function duration(seconds) {
    seconds = Math.max(0, Math.round(seconds));
    if (seconds < 60) return gettext("%(s)s s", { s: seconds });
    if (seconds < 3600) return gettext("%(m)s min %(s)s s", { m: Math.floor(seconds / 60), s: seconds % 60 });
    return gettext("%(h)s h %(m)s min", { h: Math.floor(seconds / 3600), m: Math.floor((seconds % 3600) / 60) });
  }

  const announced = new Set();
  function tick() {
    for (const node of document.querySelectorAll("[data-expires]")) {
      const left = (Number(node.dataset.expires) - now()) / 1000;
      const offer = node.closest(".offer");
      if (offer && offer.classList.contains("expired")) continue;
      const time = { time: duration(left) };
      node.textContent = left <= 0 ? gettext("expiring now")
        : left < EXPIRING_S ? gettext("expiring: %(time)s left", time) : gettext("%(time)s left", time);
      node.classList.toggle("urgent", left < EXPIRING_S);
      if (offer) offer.classList.toggle("expiring", left < EXPIRING_S);
      if (offer && left < EXPIRING_S && left > 0 && !announced.has(offer.dataset.reservation)) {
        announced.add(offer.dataset.reservation);
        const who = offer.querySelector(".customer");
        const name = who ? who.textContent : gettext("a customer");
        attention.announce(gettext("The offer from %(who)s expires in %(n)s seconds.", { who: name, n: Math.ceil(left) }));
      }
    }
    for (const node of document.querySelectorAll("[data-due]")) {
      const due = Number(node.dataset.due);
      if (!due) { node.textContent = gettext("met"); continue; }
      const left = (due - now()) / 1000;
      node.textContent = left >= 0 ? gettext("in %(time)s", { time: duration(left) })
        : gettext("overdue %(time)s", { time: duration(-left) });
      node.classList.toggle("overdue", left < 0);
    }
    for (const node of document.querySelectorAll("[data-since]")) {
      const since = Number(node.dataset.since);
      node.textContent = since ? duration((now() - since) / 1000) : "—";
    }
  }

  // --- the inbox page ---

  function drawPresences(presences) {
    const list = document.getElementById("presences");
    if (!list || !presences.length) return;
    // offline or away everywhere: say why nothing is offered (the demo's agents start offline)
    let hint = document.getElementById("presence-hint");
    if (!hint) {
      hint = el("p", { id: "presence-hint", class: "hint" });
      list.after(hint);
    }
    hint.hidden = presences.some((p) => p.presence === "available");
    hint.textContent = hint.hidden ? "" : gettext("You are not available, so no contacts are offered to you: " +
      "set your presence to available to receive offers.");
    for (const p of presences) {
      const node = list.querySelector('[data-tenant="' + CSS.escape(p.tenant) + '"]');
      if (!node) continue;
      node.textContent = term(p.presence) + (p.reason ? " (" + p.reason + ")" : "");
      node.className = "presence presence-" + p.presence;
    }
  }

  // Offers that ended without an answer stay listed, saying so, until dismissed: an
  // offer never just vanishes. drawn: the offers last drawn, by reservation.
  let drawn = new Map();
  const ended = new Map();

  function offerEnded(reservation, how) {
    const o = drawn.get(reservation);
    if (!o || ended.has(reservation)) return;
    ended.set(reservation, Object.assign({ how: how }, o));
    attention.announce(how === "expired"
      ? gettext("The offer from %(who)s expired: it went back to the queue.", { who: o.customer })
      : gettext("The offer from %(who)s was withdrawn.", { who: o.customer }));
  }

  function drawEnded(o) {
    const item = el("li", { class: "offer expired", "data-reservation": o.reservation });
    const dismiss = el("button", { type: "button", class: "dismiss" }, gettext("Dismiss"));
    dismiss.addEventListener("click", () => { ended.delete(o.reservation); item.remove(); noOffers(); });
    item.append(
      el("span", { class: "icon", title: term(o.channel) }, term(o.icon)),
      el("span", { class: "tenant" }, o.tenant_name),
      el("span", { class: "customer" }, o.customer),
      el("span", { class: "preview" }, o.preview),
      el("span", { class: "outcome" }, o.how === "expired" ? gettext("Expired: it went back to the queue.")
        : gettext("Withdrawn: no longer offered to you.")),
      dismiss,
    );
    return item;
  }

  function noOffers() {
    document.getElementById("no-offers").hidden = document.querySelectorAll("#offers .offer").length > 0;
  }

  function drawOffers(offers) {
    const list = document.getElementById("offers");
    const open = new Set(offers.map((o) => o.reservation));
    for (const [reservation, o] of drawn) {  // gone since the last look: how did it end?
      if (!open.has(reservation)) offerEnded(reservation, o.expires_at <= now() + 1000 ? "expired" : "withdrawn");
    }
    drawn = new Map(offers.map((o) => [o.reservation, o]));
    list.replaceChildren(...offers.map((o) => {
      const item = el("li", { class: "offer", "data-reservation": o.reservation });
      item.append(
        el("span", { class: "icon", title: term(o.channel) }, term(o.icon)),
        el("span", { class: "tenant" }, o.tenant_name),
        el("span", { class: "customer" }, o.customer),
        el("span", { class: "preview" }, o.preview),
        el("span", { class: "countdown", "data-expires": o.expires_at }),
        postButton("/inbox/t/" + path(o.tenant) + "/offers/" + path(o.reservation) + "/accept", gettext("Accept"), "accept"),
        postButton("/inbox/t/" + path(o.tenant) + "/offers/" + path(o.reservation) + "/reject", gettext("Reject"), "reject"),
      );
      return item;
    }), ...Array.from(ended.values()).filter((o) => !open.has(o.reservation)).map(drawEnded));
    noOffers();
  }

  // --- the list pane (both pages): tabs with counts, filters, rows, pages ---

  // the list's own query (tab, sort, filters, page), kept in the page's address
  const LIST_PARAMS = ["tab", "sort", "channel", "state", "tenant", "offset"];
  function listQuery() {
    const here = new URLSearchParams(location.search);
    const query = new URLSearchParams();
    for (const name of LIST_PARAMS) if (here.get(name)) query.set(name, here.get(name));
    return query.toString();
  }

  function drawList(list) {
    const body = document.getElementById("conversations");
    if (!body || !list) return;
    const since = now();
    body.replaceChildren(...list.rows.map((c) => {
      const item = el("li", { class: "conv" + (c.unread ? " unread" : ""), "data-conversation": c.conversation,
        "data-tenant": c.tenant });
      const link = el("a", { href: "/inbox/t/" + path(c.tenant) + "/c/" + path(c.conversation) });
      if (current && current.tenant === c.tenant && current.conversation === c.conversation) {
        link.setAttribute("aria-current", "page");
      }
      const top = el("span", { class: "line" });
      top.append(el("span", { class: "icon", title: term(c.channel) }, term(c.icon)),
        el("span", { class: "customer" }, c.customer),
        el("small", { class: "tenant-name" }, c.tenant_name));
      const bottom = el("span", { class: "line small" });
      bottom.append(el("span", { class: "state" }, term(c.state)), (c.agent && list.tab !== "mine" ? " · " + c.agent : ""),
        " · " + gettext("waiting") + " ",
        el("span", { class: "waiting", "data-since": c.waiting_s ? since - c.waiting_s * 1000 : 0 }),
        " · " + gettext("SLA") + " ", el("span", { class: "sla", "data-due": c.sla_due_at }));
      link.append(top, el("span", { class: "preview" }, c.preview), bottom);
      item.append(link);
      return item;
    }));
    document.getElementById("no-conversations").hidden = list.rows.length > 0;
    for (const node of document.querySelectorAll("[data-count]")) {
      const count = list.counts[node.dataset.count];
      node.textContent = count ? String(count) : "";
    }
    const pager = document.getElementById("pager");
    if (pager) {
      pager.hidden = list.total <= list.limit;
      pager.querySelector(".range").textContent = gettext("%(first)s–%(last)s of %(total)s",
        { first: list.offset + 1, last: Math.min(list.offset + list.limit, list.total), total: list.total });
      pager.querySelector('[rel="prev"]').hidden = list.offset === 0;
      pager.querySelector('[rel="next"]').hidden = list.offset + list.limit >= list.total;
    }
  }

  const filters = document.getElementById("list-filters");
  if (filters) {  // a changed filter shows its first page at once
    filters.addEventListener("change", () => filters.requestSubmit());
  }

  // the agent's offers and conversations, for the title's count and the shortcuts on every page
  let state = null;
  const current = page === "conversation" && document.getElementById("history")
    ? { tenant: document.getElementById("history").dataset.tenant,
      conversation: document.getElementById("history").dataset.conversation }
    : null;

  async function refreshState() {
    const query = listQuery();
    const data = await live.fetchJSON("/inbox/state.json" + (query ? "?" + query : ""));
    skew = data.now - Date.now();
    state = data;
    attention.update(data, current);
    drawList(data.list);
    tick();
    return data;
  }

  async function refreshInbox() {
    const data = await refreshState();
    drawPresences(data.presences);
    drawOffers(data.offers);
  }

  // --- the conversation page ---

  const history = document.getElementById("history");
  const entries = document.getElementById("entries");

  function drawEntry(e) {
    const item = el("li", { class: "entry entry-" + e.kind, "data-id": e.id });
    const who = e.kind === "in" ? e.address : e.kind === "out" ? e.agent + " → " + e.address
      : gettext("note by %(agent)s", { agent: e.agent });
    const meta = el("div", { class: "meta" });
    meta.append(el("span", { class: "icon", title: term(e.channel) }, term(e.icon)),
      " " + who + " · " + e.when + (e.contact_kind !== "message" ? " · " + term(e.contact_kind) : ""));
    if (e.kind === "out") {
      meta.append(" · ", el("span", { class: "status", "data-message": e.id }));
    }
    item.append(meta);
    if (e.subject) item.append(el("div", { class: "subject" }, e.subject));
    item.append(el("div", { class: "body" }, e.body));
    if (e.attachments && e.attachments.length) item.append(drawFiles(e.attachments));
    return item;
  }

  // hrefs are the server's own routes behind the login; pictures are shown as pictures
  function drawFiles(files) {
    const list = el("ul", { class: "attachments" });
    for (const file of files) {
      const row = el("li");
      if (file.is_image) {
        const link = el("a", { href: file.href, target: "_blank", rel: "noopener noreferrer", class: "picture" });
        link.append(el("img", { src: file.href, alt: file.name, loading: "lazy" }));
        row.append(link, el("br"));
      }
      row.append(file.href ? el("a", { href: file.href, target: "_blank", rel: "noopener noreferrer" }, file.name)
        : file.name);
      if (file.size) row.append(" ", el("small", {}, "(" + file.size + " bytes)"));
      list.append(row);
    }
    return list;
  }

  async function refreshConversation() {
    const last = entries.lastElementChild;
    const after = last ? last.dataset.id : "";
    const url = "/inbox/t/" + path(history.dataset.tenant) + "/c/" + path(history.dataset.conversation) +
      "/messages.json?after=" + encodeURIComponent(after);
    const data = await live.fetchJSON(url);
    for (const e of data.entries) {
      if (entries.querySelector('[data-id="' + CSS.escape(e.id) + '"]')) continue;
      entries.append(drawEntry(e));
      if (e.kind === "in") attention.messageHere(current, e.address, e.body.slice(0, 140));
    }
    for (const [id, status] of Object.entries(data.statuses || {})) {
      const node = entries.querySelector('.status[data-message="' + CSS.escape(id) + '"]');
      if (node) node.textContent = term(status);
    }
    const listeners = document.getElementById("listeners");
    if (listeners && typeof data.listeners === "string") {
      document.getElementById("listeners-text").textContent = data.listeners;
      listeners.hidden = !data.listeners;
    }
    const state = document.getElementById("state");
    if (state && state.textContent !== term(data.state) && state.textContent !== term("wrap-up")) {
      state.textContent = term(data.state);
    }
  }

  // web chat: the customer sees "typing" while the agent writes, and the agent theirs
  let typingTimer = null;
  function showTyping(active) {
    const node = document.getElementById("typing");
    if (!node) return;
    node.hidden = !active;
    clearTimeout(typingTimer);
    if (active) typingTimer = setTimeout(() => { node.hidden = true; }, 10000);  // a lost "stopped"
  }

  function markSeen(upTo) {
    for (const node of entries ? entries.querySelectorAll(".entry-out") : []) {
      if (node.dataset.id <= upTo) node.classList.add("seen");  // ids are ULIDs: sortable
    }
  }

  const replyBody = document.getElementById("reply-body");
  if (history && history.dataset.chat === "yes" && replyBody) {
    const url = "/inbox/t/" + path(history.dataset.tenant) + "/c/" + path(history.dataset.conversation) + "/typing";
    let sentAt = 0;
    let idle = null;
    const send = (active) => fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify({ active: active }),
    }).catch(() => {});
    replyBody.addEventListener("input", () => {
      if (Date.now() - sentAt > 3000) { sentAt = Date.now(); send(true); }
      clearTimeout(idle);
      idle = setTimeout(() => { sentAt = 0; send(false); }, 5000);
    });
  }

  function notice(text) {
    const node = document.getElementById("live-notice");
    if (!node) return;
    node.textContent = text;
    node.hidden = false;
  }

  // --- the socket ---

  const pending = new Map();
  function soon(action) {  // many events in a burst: one redraw each
    if (pending.has(action)) return;
    pending.set(action, setTimeout(() => { pending.delete(action); action().catch(() => {}); }, 300));
  }

  function onEvent(event) {
    if (event.kind === "timed_out" && drawn.has(event.reservation)) offerEnded(event.reservation, "expired");
    if (page === "inbox") { soon(refreshInbox); return; }
    if (page !== "conversation" || !history) return;
    if (event.conversation === history.dataset.conversation && event.tenant === history.dataset.tenant) {
      if (event.kind === "visitor_typing") { showTyping(event.active); return; }
      if (event.kind === "visitor_read") { markSeen(event.up_to); return; }
      soon(refreshConversation);
      soon(refreshState);  // its row in the list too
      if (event.kind === "message" && event.direction === "in") showTyping(false);
      if (event.kind === "transferred") notice(gettext("This conversation was transferred."));
      if (event.kind === "closed") notice(gettext("This conversation was closed."));
      return;
    }
    if (event.kind === "visitor_typing" || event.kind === "visitor_read") return;
    soon(refreshState);  // elsewhere: an offer, another conversation's message (the title's count)
    if (event.kind === "reserved") notice("A new offer is waiting in your inbox.");
    if (event.kind === "timed_out" && state && state.offers.some((o) => o.reservation === event.reservation)) {
      notice(gettext("An offer expired unanswered: it went back to the queue."));
    }
  }

  async function resync() {
    if (page === "inbox") return refreshInbox();
    if (page === "conversation" && history) return Promise.all([refreshConversation(), refreshState()]);
    return undefined;
  }

  // --- the shortcuts' meaning on these pages ---

  function conversationLinks() {
    return Array.from(document.querySelectorAll("#conversations a"));
  }

  function step(by) {
    if (page === "inbox") {  // move along the list; Enter opens
      const links = conversationLinks();
      if (!links.length) return;
      const at = links.indexOf(document.activeElement);
      links[at < 0 ? (by > 0 ? 0 : links.length - 1) : Math.min(links.length - 1, Math.max(0, at + by))].focus();
      return;
    }
    if (!state || !current) return;
    const list = state.list.rows;
    const at = list.findIndex((c) => c.tenant === current.tenant && c.conversation === current.conversation);
    const next = list[at < 0 ? 0 : at + by];
    if (next) location.assign("/inbox/t/" + path(next.tenant) + "/c/" + path(next.conversation));
  }

  shortcuts.define({
    accept() {
      const button = document.querySelector(".offer:not(.expired) button.accept");
      if (button) { button.click(); return; }
      const first = state && state.offers[0];  // on a conversation page: the offer listed on the inbox
      if (!first) return;
      const form = postButton("/inbox/t/" + path(first.tenant) + "/offers/" + path(first.reservation) + "/accept",
        gettext("Accept"), "accept");
      form.hidden = true;
      document.body.append(form);
      form.requestSubmit();
    },
    next() { step(1); },
    previous() { step(-1); },
  });

  const canned = document.getElementById("canned");
  if (canned) {
    canned.addEventListener("change", () => {
      if (canned.value) document.getElementById("reply-body").value = canned.value;
    });
  }

  tick();
  setInterval(tick, 1000);
  // during a call, who listens in reaches no event stream: look every few seconds
  const callPanel = document.getElementById("call-panel");
  if (page === "conversation" && history && callPanel && callPanel.dataset.live) {
    setInterval(() => refreshConversation().catch(() => {}), 5000);
  }
  live.start({ onEvent: onEvent, onResync: resync });
})();
