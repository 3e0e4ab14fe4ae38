// The desk scripts' words in the agent's language. base.html renders the translations of the
// messages the scripts ask for (router/locale; router/templating.py) as JSON in #page-messages;
// a message without a translation stays as written. gettext("%(n)s left", { n: 3 }) fills
// placeholders by name, as the templates' _() does; term("queued") names a stored value.
(function () {
  "use strict";
  const node = document.getElementById("page-messages");
  const data = node ? JSON.parse(node.textContent) : {};
  const messages = data.messages || {};
  const terms = data.terms || {};
  window.gettext = function (message, values) {
    const text = messages[message] || message;
    if (!values) return text;
    return text.replace(/%\((\w+)\)s/g, (whole, name) => (name in values ? String(values[name]) : whole));
  };
  window.term = (value) => terms[value] || value;
})();
