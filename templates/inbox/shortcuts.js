// Keyboard shortcuts, listed in the help dialog ("?", or the Shortcuts button). Single
// letters never fire while the agent types in a box (only Ctrl/Cmd+Enter does there: it
// sends what they are writing), nor while a dialog is open, and they can be turned off
// (WCAG 2.1.4: speech input types letters). The page script says what "accept", "next"
// and "previous" mean on it (InboxShortcuts.define); the rest is the same everywhere.
(function () {
  "use strict";
  const ENABLED_KEY = "inbox-shortcuts";
  const help = document.getElementById("shortcuts-help");
  const opener = document.getElementById("shortcuts-open");
  const enabled = document.getElementById("shortcuts-enabled");
  const actions = {
    accept() {
      const button = document.querySelector(".offer:not(.expired) button.accept");
      if (button) button.click();
    },
    next() {},
    previous() {},
  };

  const on = () => localStorage.getItem(ENABLED_KEY) !== "off";

  function showHelp() {
    if (!help || help.open) return;
    if (enabled) enabled.checked = on();
    help.showModal();
  }

  if (opener) opener.addEventListener("click", showHelp);
  if (enabled) enabled.addEventListener("change", () => localStorage.setItem(ENABLED_KEY, enabled.checked ? "on" : "off"));

  function typing(target) {
    if (!(target instanceof Element)) return false;
    return target.isContentEditable || Boolean(target.closest("input, textarea, select, [contenteditable]"));
  }

  function focusReply() {
    const box = document.getElementById("reply-body");
    if (!box) return false;
    box.focus();
    box.setSelectionRange(box.value.length, box.value.length);
    return true;
  }

  const KEYS = {
    "?": showHelp,
    a: () => actions.accept(),
    j: () => actions.next(),
    k: () => actions.previous(),
    r: focusReply,
    i: () => { if (location.pathname !== "/inbox") location.assign("/inbox"); },
  };

  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.isComposing) return;
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      // send what is being written: the reply (or the note) whose box has the focus
      const box = event.target instanceof Element ? event.target.closest("textarea") : null;
      if (box && box.form) {
        event.preventDefault();
        box.form.requestSubmit();
      }
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    if (document.querySelector("dialog[open]") || !on()) return;
    const action = KEYS[event.key];
    if (!action) return;
    event.preventDefault();
    action();
  });

  window.InboxShortcuts = {
    define(given) { Object.assign(actions, given); },
    showHelp,
  };
})();
