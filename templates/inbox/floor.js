// The supervisors' floor, live: redrawn from /inbox/floor.json when the events
// socket reports a change, and every few seconds for the growing waits.
(function () {
  "use strict";
  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
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
      row.append(cell, el("td", {}, c.agent), el("td", {}, c.state), el("td", {}, c.channel), el("td", {}, c.queue));
      return row;
    }));
  }

  let busy = false;
  async function refresh() {
    if (busy) return;
    busy = true;
    try {
      const response = await fetch("/inbox/floor.json", { credentials: "same-origin" });
      if (response.status === 401) { location.assign("/inbox/login"); return; }
      if (response.ok) (await response.json()).tenants.forEach(draw);
    } finally {
      busy = false;
    }
  }

  let delay = 1000;
  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + location.host + "/inbox/live");
    socket.onopen = () => { delay = 1000; };
    socket.onmessage = () => { document.body.dataset.live = "on"; refresh().catch(() => {}); };
    socket.onclose = (closed) => {
      if (closed.code === 4401) { location.href = "/inbox/login"; return; }  // the session ended
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }

  setInterval(() => refresh().catch(() => {}), 3000);
  connect();
})();
