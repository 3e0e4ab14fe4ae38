  // --- the satisfaction survey (channels/webchat/survey.py), included by widget.js ---
  // A survey item is the question with five rating buttons; a click sends the rating at
  // once, then an optional comment may follow. A "rated" item (every tab gets it, and a
  // reload replays it) shows the survey answered.

  var surveys = {};  // conversation -> its survey's parts
  var surveyCss = [
    ".rating { display: flex; gap: 6px; margin-top: 8px; }",
    ".rating button { min-width: 36px; height: 36px; border: 1px solid #9ca3af; border-radius: 8px; background: #fff;",
    "  color: #111827; font: 600 15px/1 system-ui, sans-serif; cursor: pointer; }",
    ".rating button[aria-pressed=true] { background: var(--cr-color); color: var(--cr-text); border-color: var(--cr-color); }",
    ".rating button:disabled { cursor: default; }",
    ".rating button:focus-visible, form.survey-comment button:focus-visible, form.survey-comment textarea:focus-visible {",
    "  outline: 3px solid #2563eb; outline-offset: 1px; }",
    ".scale { font-size: 12px; color: #4b5563; margin-top: 4px; }",
    ".survey-status { font-size: 13px; margin-top: 6px; }",
    "form.survey-comment { padding: 8px 0 0; border: 0; gap: 6px; }",
    "form.survey-comment textarea { height: 60px; background: #fff; }"
  ].join("\n");
  if (root.adoptedStyleSheets !== undefined && window.CSSStyleSheet && CSSStyleSheet.prototype.replaceSync) {
    var surveySheet = new CSSStyleSheet();
    surveySheet.replaceSync(surveyCss);
    root.adoptedStyleSheets = root.adoptedStyleSheets.concat([surveySheet]);
  } else {
    var surveyStyle = el("style");
    surveyStyle.textContent = surveyCss;
    root.appendChild(surveyStyle);
  }

  function showSurveyItem(item) {
    if (item.type === "survey") { surveyAsked(item); return true; }
    if (item.type === "rated") { surveyRated(item); return true; }
    return false;
  }

  function surveyAsked(item) {
    if (shown[item.id]) {
      // replayed after a reconnect: a rating sent as the connection dropped may never have
      // arrived, so the buttons work again (a "rated" item later in the replay settles it)
      var known = surveys[item.conversation];
      if (known && !known.rated) {
        known.buttons.forEach(function (b) { b.disabled = false; b.setAttribute("aria-pressed", "false"); });
        known.status.textContent = "";
      }
      return;
    }
    var bubble = el("div", "msg out survey");
    bubble.dataset.id = item.id;
    bubble.appendChild(el("div", "who", item.agent || CONFIG.title));
    var question = el("div", "text", item.text);
    question.id = "cr-survey-" + item.id;
    bubble.appendChild(question);
    var group = el("div", "rating");
    group.setAttribute("role", "group");
    group.setAttribute("aria-labelledby", question.id);
    var buttons = [];
    for (var n = 1; n <= 5; n++) {
      var button = el("button", "", String(n));
      button.type = "button";
      button.setAttribute("aria-label", n + " of 5");
      button.setAttribute("aria-pressed", "false");
      button.addEventListener("click", rateWith(item.conversation, n));
      buttons.push(button);
      group.appendChild(button);
    }
    bubble.appendChild(group);
    bubble.appendChild(el("div", "scale", "1 is poor, 5 is excellent"));
    var status = el("div", "survey-status");
    status.setAttribute("role", "status");
    bubble.appendChild(status);
    var form = el("form", "survey-comment");
    form.hidden = true;
    var comment = el("textarea");
    comment.setAttribute("aria-label", "Your comment (optional)");
    comment.placeholder = "Anything you would like to add? (optional)";
    comment.maxLength = 1000;
    var sendComment = el("button", "send", "Send comment");
    sendComment.type = "submit";
    form.appendChild(comment);
    form.appendChild(sendComment);
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var words = comment.value.trim();
      if (!words) { status.textContent = "Write a comment first, or leave it."; comment.focus(); return; }
      if (!connected) { status.textContent = "Not connected: please try again in a moment."; return; }
      sendComment.disabled = true;
      status.textContent = "Sending\u2026";
      send({ type: "rating", conversation: item.conversation, comment: words });
    });
    bubble.appendChild(form);
    log.appendChild(bubble);
    shown[item.id] = bubble;
    surveys[item.conversation] = { buttons: buttons, status: status, form: form, comment: comment, send: sendComment };
    if (item.id > lastOut) lastOut = item.id;
    scrollDown();
  }

  function rateWith(conversation, rating) {
    return function () {
      var survey = surveys[conversation];
      if (!connected) { survey.status.textContent = "Not connected: please try again in a moment."; return; }
      survey.buttons.forEach(function (b) { b.disabled = true; });
      survey.buttons[rating - 1].setAttribute("aria-pressed", "true");
      survey.status.textContent = "Sending\u2026";
      send({ type: "rating", conversation: conversation, rating: rating });
    };
  }

  function surveyRated(item) {
    var survey = surveys[item.conversation];
    if (!survey) return;
    survey.rated = true;
    survey.buttons.forEach(function (b, i) {
      b.disabled = true;
      b.setAttribute("aria-pressed", i + 1 === item.rating ? "true" : "false");
    });
    if (item.commented) {
      survey.form.hidden = true;
      survey.status.textContent = "Thank you for your rating and your comment.";
    } else {
      survey.status.textContent = "Thank you for your rating (" + item.rating + " of 5).";
      survey.form.hidden = false;
      survey.send.disabled = false;
    }
    scrollDown();
  }

  function surveyClosed(frame) {
    var survey = surveys[frame.conversation];
    if (!survey) { say(frame.message); return; }
    survey.buttons.forEach(function (b) { b.disabled = true; });
    survey.form.hidden = true;
    survey.status.textContent = "This survey is closed. Thank you all the same.";
  }
