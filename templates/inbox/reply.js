// The reply box: its draft is kept for the tab's session, per conversation, so a login
// in between (the session ended), a reload or a trip to another page loses nothing; it
// is dropped once the reply is sent. Typing "/" at the start of the box lists the
// tenant's canned replies (the select beside it holds them), filtered as you type:
// arrows to choose, Enter or Tab to insert, Escape to close.
(function () {
  "use strict";
  const box = document.getElementById("reply-body");
  const form = document.getElementById("reply-form");
  const history = document.getElementById("history");
  if (!box || !form || !history) return;

  // --- the draft ---

  const draftKey = "inbox-draft:" + history.dataset.tenant + "/" + history.dataset.conversation;

  function saveDraft(submitted) {
    if (box.value.trim()) {
      sessionStorage.setItem(draftKey, JSON.stringify({ text: box.value, submitted: Boolean(submitted) }));
    } else {
      sessionStorage.removeItem(draftKey);
    }
  }

  function restoreDraft() {
    let draft = null;
    try { draft = JSON.parse(sessionStorage.getItem(draftKey)); } catch (e) { /* none */ }
    if (!draft) return;
    if (draft.submitted && new URLSearchParams(location.search).get("done") === "replied") {
      sessionStorage.removeItem(draftKey);  // it went out
      return;
    }
    if (box.value) return;
    box.value = draft.text;  // sent when the session had ended, or never sent: it is still to send
    const note = document.createElement("p");
    note.className = "hint draft-restored";
    note.setAttribute("role", "status");
    note.textContent = gettext("Your unsent reply was kept: check it and send it.");
    box.before(note);
  }

  box.addEventListener("input", () => saveDraft(false));
  form.addEventListener("submit", () => saveDraft(true));
  document.addEventListener("inbox:leaving", () => saveDraft(false));
  restoreDraft();

  // --- canned replies by "/" ---

  const select = document.getElementById("canned");
  if (!select) return;
  const canned = Array.from(select.options).filter((o) => o.value).map((o) => ({ name: o.textContent, text: o.value }));
  if (!canned.length) return;

  const picker = document.createElement("ul");
  picker.id = "canned-picker";
  picker.className = "canned-picker";
  picker.setAttribute("role", "listbox");
  picker.setAttribute("aria-label", gettext("Canned replies"));
  picker.hidden = true;
  box.after(picker);
  box.setAttribute("aria-controls", picker.id);
  box.setAttribute("aria-describedby", "canned-hint");
  const hint = document.createElement("p");
  hint.id = "canned-hint";
  hint.className = "hint";
  hint.textContent = gettext("Type / at the start for canned replies.");
  picker.after(hint);

  let shown = [];
  let active = 0;

  function query() {
    const before = box.value.slice(0, box.selectionStart);
    const match = /^\/([^\n]*)$/.exec(before);
    return match ? match[1].trim().toLowerCase() : null;
  }

  function close() {
    picker.hidden = true;
    box.removeAttribute("aria-activedescendant");
    shown = [];
  }

  function draw() {
    const q = query();
    if (q === null) { close(); return; }
    shown = canned.filter((c) => c.name.toLowerCase().includes(q) || c.text.toLowerCase().includes(q));
    active = Math.min(active, Math.max(0, shown.length - 1));
    picker.replaceChildren(...shown.map((c, n) => {
      const item = document.createElement("li");
      item.id = "canned-option-" + n;
      item.setAttribute("role", "option");
      item.setAttribute("aria-selected", String(n === active));
      const name = document.createElement("strong");
      name.textContent = c.name;
      const text = document.createElement("span");
      text.textContent = c.text.length > 90 ? c.text.slice(0, 90) + "…" : c.text;
      item.append(name, " ", text);
      item.addEventListener("mousedown", (event) => { event.preventDefault(); pick(n); });  // keep the focus in the box
      return item;
    }));
    if (!shown.length) {
      const none = document.createElement("li");
      none.className = "none";
      none.setAttribute("role", "option");
      none.setAttribute("aria-disabled", "true");
      none.setAttribute("aria-selected", "false");
      none.textContent = gettext("No canned reply matches.");
      picker.append(none);
    }
    picker.hidden = false;
    if (shown.length) box.setAttribute("aria-activedescendant", "canned-option-" + active);
    else box.removeAttribute("aria-activedescendant");
  }

  function pick(n) {
    const chosen = shown[n];
    if (!chosen) return;
    const rest = box.value.slice(box.selectionStart);
    box.value = chosen.text + rest;
    box.setSelectionRange(chosen.text.length, chosen.text.length);
    close();
    box.dispatchEvent(new Event("input", { bubbles: true }));  // the draft, and the typing signal
  }

  box.addEventListener("input", () => { active = 0; draw(); });
  box.addEventListener("blur", close);
  box.addEventListener("keydown", (event) => {
    if (picker.hidden) return;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      if (!shown.length) return;
      active = (active + (event.key === "ArrowDown" ? 1 : shown.length - 1)) % shown.length;
      draw();
    } else if ((event.key === "Enter" || event.key === "Tab") && !event.ctrlKey && !event.metaKey && shown.length) {
      event.preventDefault();
      pick(active);
    } else if (event.key === "Escape") {
      event.preventDefault();
      close();
    }
  });
})();
