// The knowledge base beside the reply box: the articles for the customer's last message at
// once, then search as you type (debounced), and insert an
// article's answer or its public link into the reply at the cursor. Each insertion is told
// to the server, which counts it once per conversation on the article. Article text only
// ever goes in via textContent or the textarea's value.
(function () {
  "use strict";
  const panel = document.getElementById("kb-panel");
  const box = document.getElementById("reply-body");
  if (!panel || !box) return;
  const queryBox = document.getElementById("kb-query");
  const results = document.getElementById("kb-results");
  const status = document.getElementById("kb-status");
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const DEBOUNCE_MS = 250;
  let timer = null;
  let asked = 0;  // the newest request: an older answer arriving late is dropped

  function insert(text) {
    const start = box.selectionStart ?? box.value.length;
    const end = box.selectionEnd ?? start;
    const before = box.value.slice(0, start);
    const glue = before && !before.endsWith("\n") && !before.endsWith(" ") ? "\n" : "";
    box.value = before + glue + text + box.value.slice(end);
    const caret = (before + glue + text).length;
    box.setSelectionRange(caret, caret);
    box.dispatchEvent(new Event("input", { bubbles: true }));  // the draft keeps it (reply.js)
    box.focus();
  }

  function counted(article, what) {
    fetch(panel.dataset.inserted + encodeURIComponent(article.id) + "/inserted", {
      method: "POST",
      headers: { "X-CSRF-Token": csrf },
      credentials: "same-origin",
    }).then((response) => {
      status.textContent = response.ok ? "Inserted the " + what + " of “" + article.title + "”." :
        "Inserted; it could not be counted (" + response.status + ").";
    }).catch(() => { status.textContent = "Inserted; it could not be counted (offline)."; });
  }

  function button(label, onClick) {
    const node = document.createElement("button");
    node.type = "button";
    node.textContent = label;
    node.addEventListener("click", onClick);
    return node;
  }

  function show(answer, suggested) {
    results.replaceChildren();
    for (const article of answer.articles) {
      const item = document.createElement("li");
      item.dataset.article = article.id;
      const title = document.createElement("strong");
      title.textContent = article.title;
      title.lang = article.locale;
      const snippet = document.createElement("span");
      snippet.className = "snippet";
      snippet.textContent = article.snippet;
      item.append(title, snippet);
      item.append(button("Insert answer", () => { insert(article.text); counted(article, "answer"); }));
      if (article.link) {
        item.append(button("Insert link", () => { insert(article.title + ": " + article.link); counted(article, "link"); }));
      }
      results.append(item);
    }
    if (suggested) {
      status.textContent = answer.articles.length ? "Articles for the customer's last message:" : "";
      return;
    }
    status.textContent = answer.query ? (answer.articles.length ? answer.articles.length + " article" +
      (answer.articles.length === 1 ? "" : "s") + " found." : "No article matches.") : "";
  }

  function search(suggestion) {
    const query = suggestion || queryBox.value.trim();
    const mine = ++asked;
    if (!query) { show({ query: "", articles: [] }); return; }
    fetch(panel.dataset.search + "?q=" + encodeURIComponent(query), { credentials: "same-origin" })
      .then((response) => {
        if (!response.ok) throw new Error(String(response.status));
        return response.json();
      })
      .then((answer) => { if (mine === asked) show(answer, Boolean(suggestion)); })
      .catch((error) => { if (mine === asked) status.textContent = "The search failed (" + error.message + "): try again."; });
  }

  queryBox.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => search(), DEBOUNCE_MS); });
  panel.addEventListener("submit", (event) => { event.preventDefault(); clearTimeout(timer); search(); });
  if (panel.dataset.suggest.trim()) search(panel.dataset.suggest.trim());
})();
