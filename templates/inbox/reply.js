// The reply box: its draft is kept for the tab's session, per conversation, so a login
// in between (the session ended), a reload or a trip to another page loses nothing; it
// is dropped once the reply is sent.
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
    note.textContent = "Your unsent reply was kept: check it and send it.";
    box.before(note);
  }

  box.addEventListener("input", () => saveDraft(false));
  form.addEventListener("submit", () => saveDraft(true));
  document.addEventListener("inbox:leaving", () => saveDraft(false));
  restoreDraft();
})();
