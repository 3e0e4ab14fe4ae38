// Campaign progress, live: the figures, state and allowed actions of every campaign on
// the page, redrawn from its JSON (#campaigns[data-source]) every few seconds, as text
// only. Also asks before a cancel, which cannot be undone.
(function () {
  "use strict";
  const root = document.getElementById("campaigns");
  if (!root) return;
  const number = (value) => Number(value).toLocaleString("en-US");

  function draw(c) {
    const box = root.querySelector('[data-tenant="' + CSS.escape(c.tenant) + '"][data-campaign="' +
      CSS.escape(c.campaign) + '"]');
    if (!box) return;
    box.dataset.state = c.state;
    box.querySelectorAll(".state").forEach((node) => {
      node.textContent = c.state;
      node.className = node.className.replace(/\bstate-\S+/, "state-" + c.state);
    });
    const figures = Object.assign({}, c.counts, { done: c.done, total: c.total });
    box.querySelectorAll("[data-count]").forEach((node) => {
      const variant = node.closest("[data-variant]");
      const source = variant ? (c.variants[variant.dataset.variant] || {}) : figures;
      node.textContent = number(source[node.dataset.count] || 0);
    });
    const bar = box.querySelector("progress");
    if (bar) {
      bar.max = Math.max(c.total, 1);
      bar.value = c.total ? c.done : 1;
      bar.textContent = c.percent + " %";
    }
    box.querySelectorAll(".percent").forEach((node) => { node.textContent = c.percent + " %"; });
    box.querySelectorAll("form[data-action]").forEach((form) => {
      form.hidden = !c.actions.includes(form.dataset.action);
    });
    const dispositions = box.querySelector(".dispositions");
    if (dispositions) {
      const items = Object.entries(c.dispositions).map(([name, count]) => {
        const item = document.createElement("li");
        item.textContent = name.replaceAll("_", " ") + ": " + number(count);
        return item;
      });
      if (!items.length) {
        items.push(document.createElement("li"));
        items[0].textContent = "none yet";
      }
      dispositions.replaceChildren(...items);
    }
  }

  let busy = false;
  async function refresh() {
    if (busy || document.hidden) return;
    busy = true;
    try {
      const response = await fetch(root.dataset.source, { credentials: "same-origin" });
      if (response.status === 401) { location.assign("/inbox/login"); return; }
      if (response.ok) {
        (await response.json()).campaigns.forEach(draw);
        document.body.dataset.live = "on";
      }
    } finally {
      busy = false;
    }
  }

  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });
  setInterval(() => refresh().catch(() => {}), 3000);
  refresh().catch(() => {});
})();
