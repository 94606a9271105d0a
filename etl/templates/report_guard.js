(function () {
  "use strict";
  // Runs before anything else: every error, blocked load or dialog ends up in a body attribute,
  // so a headless browser's DOM dump shows whether the page worked.
  var body = document.body;
  var errors = [];
  function note(message) {
    errors.push(String(message).slice(0, 300));
    body.setAttribute("data-errors", errors.join(" | "));
  }
  window.addEventListener("error", function (event) {
    var target = event.target;
    if (target && target !== window && target.tagName) {
      note("failed to load <" + String(target.tagName).toLowerCase() + ">");
    } else {
      note(event.message || "script error");
    }
  }, true);
  window.addEventListener("unhandledrejection", function (event) {
    note("unhandled rejection: " + event.reason);
  });
  document.addEventListener("securitypolicyviolation", function (event) {
    note("blocked by the content security policy: " + event.violatedDirective);
  });
  function dialog() {
    body.setAttribute("data-alerts", String(Number(body.getAttribute("data-alerts") || "0") + 1));
    note("a dialog was opened");
  }
  window.alert = dialog;
  window.confirm = function () { dialog(); return false; };
  window.prompt = function () { dialog(); return null; };
  window.reportNote = note;
})();
