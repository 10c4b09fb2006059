// Reprise dashboard: progressive enhancement only (every page works without it).
// Dialogs, JSON validation of the payload editor, live refresh of active parts, the
// environment switcher, select-all, and relative times kept fresh.
(function () {
  "use strict";

  function openDialog(dialog) {
    if (dialog.open) dialog.close();
    if (typeof dialog.showModal === "function") dialog.showModal(); else dialog.setAttribute("open", "");
    var first = dialog.querySelector("textarea, input:not([type=hidden]), select");
    if (first) first.focus();
  }

  document.addEventListener("click", function (event) {
    var opener = event.target.closest("[data-open]");
    if (opener) {
      var dialog = document.getElementById(opener.getAttribute("data-open"));
      if (dialog) { event.preventDefault(); openDialog(dialog); }
      return;
    }
    var closer = event.target.closest("[data-close]");
    if (closer) { var d = closer.closest("dialog"); if (d) { event.preventDefault(); d.close(); } }
  });

  // A dialog the server rendered open (an error to show, or ?dialog=…): make it modal.
  document.querySelectorAll("dialog[data-show]").forEach(openDialog);

  // The payload editor: JSON checked as you type; the form is not sent while invalid.
  function checkJson(area) {
    var message = area.form.querySelector("[data-json-error]");
    try { JSON.parse(area.value); area.removeAttribute("aria-invalid"); message.textContent = ""; return true; }
    catch (error) { area.setAttribute("aria-invalid", "true"); message.textContent = "Not valid JSON: " + error.message; return false; }
  }
  document.querySelectorAll("textarea[data-json]").forEach(function (area) {
    area.addEventListener("input", function () { checkJson(area); });
    area.form.addEventListener("submit", function (event) {
      if (!checkJson(area)) { event.preventDefault(); area.focus(); }
    });
  });

  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });

  // Select all runs of the page; the bulk button says what it will act on.
  var all = document.querySelector("[data-select-all]");
  function selectionHint() {
    var hint = document.querySelector("[data-selection-hint]");
    if (!hint) return;
    var n = document.querySelectorAll("input[name=ids][form=bulk-form]:checked").length;
    hint.textContent = n ? n + " run" + (n === 1 ? "" : "s") + " selected" : "Acts on the runs of the current filter, or on the runs you select.";
  }
  if (all) {
    all.addEventListener("change", function () {
      document.querySelectorAll("input[name=ids][form=bulk-form]").forEach(function (box) { box.checked = all.checked; });
      selectionHint();
    });
  }
  document.addEventListener("change", function (event) {
    if (event.target.matches("input[name=ids]")) selectionHint();
  });

  // Live refresh: a [data-refresh] part is fetched again every few seconds while it says
  // it is active, not while a dialog or a menu is open, keeping the selection.
  function refresh(part) {
    if (part.getAttribute("data-active") !== "true" || part.getAttribute("data-refresh").indexOf("nolive=1") >= 0) return;
    if (document.querySelector("dialog[open], details.menu[open]")) return;
    fetch(part.getAttribute("data-refresh"), { credentials: "same-origin", headers: { "accept": "text/html" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (html === null) return;
        var checked = Array.prototype.map.call(part.querySelectorAll("input[name=ids]:checked"), function (b) { return b.value; });
        part.innerHTML = html;
        checked.forEach(function (id) {
          var box = part.querySelector("input[name=ids][value='" + id + "']");
          if (box) box.checked = true;
        });
        var stillActive = part.id === "runs-rows"
          ? part.querySelector("tr[data-active=true]") !== null
          : part.querySelector("[data-still-active]") !== null;
        part.setAttribute("data-active", stillActive ? "true" : "false");
        // The rest of the page (header, buttons) depends on it too: show it once, done.
        if (!stillActive && part.hasAttribute("data-reload-when-done")) window.location.reload();
        part.dispatchEvent(new CustomEvent("refreshed", { bubbles: true }));
      })
      .catch(function () { /* offline for a moment: try again at the next tick */ });
  }
  var parts = document.querySelectorAll("[data-refresh]");
  if (parts.length) {
    setInterval(function () { parts.forEach(refresh); }, 1500);
  }
})();
