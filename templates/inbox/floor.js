// The supervisors' floor, live: redrawn from /inbox/floor.json when the events
// socket (live.js) reports a change or comes back, and every few seconds for the
// growing waits.
(function () {
  "use strict";
  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  // listen, whisper or barge into a live call: a plain form, as the page first drew it
  function monitorCell(tenantId, c) {
    const cell = el("td", { class: "monitor" });
    if (!c.live_call) return cell;
    const form = el("form", { method: "post", class: "inline", action: "/inbox/t/" + encodeURIComponent(tenantId) +
      "/c/" + encodeURIComponent(c.conversation) + "/monitor" });
    const token = document.querySelector('meta[name="csrf-token"]');
    form.append(el("input", { type: "hidden", name: "csrf", value: token ? token.content : "" }));
    for (const [mode, label] of [["listen", "Listen"], ["whisper", "Whisper"], ["barge", "Barge in"]]) {
      form.append(el("button", { type: "submit", name: "mode", value: mode, "aria-label": label + ": " + c.customer },
        label), " ");
    }
    cell.append(form);
    return cell;
  }

  function draw(tenant) {
    const section = document.querySelector('section[data-tenant="' + CSS.escape(tenant.tenant) + '"]');
    if (!section) return;
    section.querySelector("tbody.queues").replaceChildren(...tenant.queues.map((q) => {
      const row = el("tr", { "data-queue": q.queue });
      row.append(el("td", {}, q.name), el("td", { class: "waiting" }, q.waiting), el("td", {}, q.oldest_wait_s + " s"),
        el("td", {}, q.service_level === null ? "—" : q.service_level + " %"), el("td", {}, q.target),
        el("td", {}, q.handled));
      return row;
    }));
    section.querySelector(".by-state").textContent =
      Object.entries(tenant.by_state).map(([state, count]) => state + ": " + count).join(" ");
    section.querySelector("tbody.agents").replaceChildren(...tenant.agents.map((a) => {
      const row = el("tr", { "data-agent": a.agent });
      row.append(el("td", {}, a.name),
        el("td", { class: "presence presence-" + a.presence }, a.presence + (a.reason ? " (" + a.reason + ")" : "")),
        el("td", {}, a.load + " / " + a.capacity),
        el("td", {}, Object.entries(a.by_channel).map(([ch, n]) => ch + " " + n).join(" ")));
      return row;
    }));
    section.querySelector("tbody.in-progress").replaceChildren(...tenant.in_progress.map((c) => {
      const row = el("tr", { "data-conversation": c.conversation });
      const link = el("a", { href: "/inbox/t/" + encodeURIComponent(tenant.tenant) + "/c/" +
        encodeURIComponent(c.conversation) }, c.customer);
      const cell = el("td");
      cell.append(link);
      row.append(cell, el("td", {}, c.agent), el("td", {}, c.state), el("td", {}, c.channel), el("td", {}, c.queue),
        monitorCell(tenant.tenant, c));
      return row;
    }));
    drawSatisfaction(section, tenant);
  }

  // today's CSAT per queue and the low ratings to follow up (templates/inbox/_floor_satisfaction.html)
  function drawSatisfaction(section, tenant) {
    const s = tenant.satisfaction;
    section.querySelector("tbody.csat").replaceChildren(...s.queues.map((q) => {
      const row = el("tr", { "data-queue": q.queue });
      row.append(el("td", {}, q.name), el("td", {}, q.csat), el("td", {}, q.average), el("td", {}, q.answered + " of " + q.sent));
      return row;
    }));
    const csrf = document.querySelector('meta[name="csrf-token"]').content;
    section.querySelector("ul.low-ratings").replaceChildren(...s.low.map((item) => {
      const path = "/inbox/t/" + encodeURIComponent(tenant.tenant) + "/c/" + encodeURIComponent(item.conversation);
      const line = el("li", { "data-conversation": item.conversation });
      const form = el("form", { method: "post", action: path + "/followed-up", class: "inline" });
      form.append(el("input", { type: "hidden", name: "csrf", value: csrf }), el("button", { type: "submit" }, "Followed up"));
      line.append(el("a", { href: path }, item.customer), " rated " + item.rating + " of 5 · " + item.queue + " · " +
        item.agent + (item.comment ? ": “" + item.comment + "” " : " "), form);
      return line;
    }));
    section.querySelector(".low-none").hidden = s.low.length > 0;
  }

  let busy = false;
  async function refresh() {
    if (busy) return;
    busy = true;
    try {
      (await window.InboxLive.fetchJSON("/inbox/floor.json")).tenants.forEach(draw);
    } finally {
      busy = false;
    }
  }

  // the socket says when to redraw (and the page redraws all when it reconnects); the
  // timer keeps the growing waits current
  window.InboxLive.start({ onEvent: () => refresh().catch(() => {}), onResync: refresh });
  setInterval(() => refresh().catch(() => {}), 3000);
})();
