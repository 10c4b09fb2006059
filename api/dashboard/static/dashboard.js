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
  // The run page's logs panel: the filter reads again without a reload, more lines load
  // after the last one shown (the cursor is its seq) and, while the run is active, new
  // lines are fetched every second (a live tail).
  var logs = document.querySelector("[data-logs]");
  if (logs) {
    var list = logs.querySelector("[data-log-lines]");
    var empty = logs.querySelector("[data-logs-empty]");
    var state = logs.querySelector("[data-logs-state]");
    var filter = logs.querySelector("[data-logs-filter]");
    var after = logs.getAttribute("data-after") || "";
    var generation = 0;
    var timer = null;

    // A line, or (``failed``) a failed attempt's error: what the task raised, not a line.
    var line = function (data, failed) {
      var item = document.createElement("li");
      item.className = "log-line " + (failed ? "attempt-error " : "") + "lvl-" + String(data.level).toLowerCase();
      if (failed) item.setAttribute("data-attempt-error", data.attempt);
      else item.setAttribute("data-seq", data.seq);
      item.setAttribute("data-level", data.level);
      item.setAttribute("data-attempt", data.attempt);
      var parts = [["log-time mono", String(data.time || "").slice(11, 23)], ["log-level", data.level],
                   ["log-attempt muted", "#" + data.attempt],
                   failed ? ["log-logger mono", "Attempt " + data.attempt + " failed"] : ["log-logger muted mono", data.logger],
                   ["log-message mono", data.message]];
      parts.forEach(function (part) {
        var span = document.createElement("span");
        span.className = part[0];
        span.textContent = part[1];
        item.appendChild(span);
      });
      if (data.exception) {
        var details = document.createElement("details");
        details.className = "traceback";
        details.open = true;
        var summary = document.createElement("summary");
        summary.textContent = failed ? "Traceback (raised by the task: the attempt's error)" : "Traceback";
        var pre = document.createElement("pre");
        var code = document.createElement("code");
        code.textContent = data.exception;
        pre.appendChild(code);
        details.appendChild(summary);
        details.appendChild(pre);
        item.appendChild(details);
      }
      return item;
    };

    // Each failed attempt's error goes after that attempt's lines: before the first entry
    // of a later attempt, or last once every line has been read. Shown once.
    var placeErrors = function (errors, complete) {
      (errors || []).forEach(function (error) {
        if (list.querySelector("[data-attempt-error='" + error.attempt + "']")) return;
        var later = Array.prototype.find.call(list.children, function (item) {
          return Number(item.getAttribute("data-attempt")) > error.attempt;
        });
        if (later) list.insertBefore(line(error, true), later);
        else if (complete) list.appendChild(line(error, true));
      });
    };

    var schedule = function (delay) {
      if (timer) clearTimeout(timer);
      timer = setTimeout(read, delay);
    };

    var read = function () {
      var mine = generation;
      var url = logs.getAttribute("data-logs") + "&after=" + encodeURIComponent(after) +
        "&level=" + encodeURIComponent(filter.elements.log_level.value) +
        "&search=" + encodeURIComponent(filter.elements.log_search.value);
      fetch(url, { credentials: "same-origin", headers: { "accept": "application/json" } })
        .then(function (response) { return response.json(); })
        .then(function (data) {
          if (mine !== generation) return; // the filter changed meanwhile
          if (data.error) { state.textContent = data.error; return; }
          var atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 8;
          data.lines.forEach(function (d) { list.appendChild(line(d)); });
          placeErrors(data.attemptErrors, !data.hasMore);
          if (atBottom && list.children.length) list.scrollTop = list.scrollHeight;
          if (data.after !== null && data.after !== undefined) after = String(data.after);
          empty.hidden = list.children.length > 0;
          if (!list.children.length) {
            empty.textContent = filter.elements.log_level.value || filter.elements.log_search.value
              ? "No line matches." : data.active ? "No log line yet." : "No log line.";
          }
          var more = logs.querySelector("[data-logs-more]");
          if (more && !data.hasMore) more.remove();
          state.textContent = data.active ? "Live: new lines appear as the run writes them" : "";
          if (data.hasMore) schedule(0);
          else if (data.active) schedule(1000);
        })
        .catch(function () { if (mine === generation) schedule(3000); });
    };

    var restart = function () {
      // The address keeps the filter, so a reload (the page reloads when the run ends)
      // shows the same lines.
      if (window.history && window.URLSearchParams) {
        var address = new URL(window.location.href);
        ["log_level", "log_search"].forEach(function (name) {
          var value = filter.elements[name].value;
          if (value) address.searchParams.set(name, value); else address.searchParams.delete(name);
        });
        window.history.replaceState(null, "", address.toString());
      }
      generation += 1;
      after = "";
      list.textContent = "";
      empty.hidden = true;
      schedule(0);
    };
    var typing = null;
    filter.addEventListener("submit", function (event) { event.preventDefault(); restart(); });
    filter.elements.log_level.addEventListener("change", restart);
    filter.elements.log_search.addEventListener("input", function () {
      clearTimeout(typing);
      typing = setTimeout(restart, 250);
    });
    schedule(logs.getAttribute("data-active") === "true" ? 1000 : 0);
  }
})();

// The schedule form: the cron's English description as you type, from the server's own
// describer and validation (describe.json), 250 ms after the last key; the answer to an
// older request is dropped.
(function () {
  "use strict";
  var cron = document.querySelector("[data-cron-describe]");
  if (!cron) return;
  var zone = cron.form.elements.timezone;
  var out = cron.form.querySelector("[data-cron-description]");
  var timer = null, asked = 0;
  function describe() {
    var mine = ++asked;
    var url = cron.getAttribute("data-cron-describe") + "&cron=" + encodeURIComponent(cron.value) +
      "&timezone=" + encodeURIComponent(zone ? zone.value : "");
    fetch(url, { credentials: "same-origin", headers: { "accept": "application/json" } })
      .then(function (response) { return response.json(); })
      .then(function (data) {
        if (mine !== asked) return;
        if (data.error) { out.textContent = data.error; out.classList.add("error-text"); cron.setAttribute("aria-invalid", "true"); }
        else { out.textContent = data.description; out.classList.remove("error-text"); cron.removeAttribute("aria-invalid"); }
      })
      .catch(function () { /* offline for a moment: the save still checks it */ });
  }
  function later() { clearTimeout(timer); timer = setTimeout(describe, 250); }
  cron.addEventListener("input", later);
  if (zone) zone.addEventListener("input", later);
})();

// A secret shown once: Copy puts it on the clipboard (or selects it to copy by hand).
(function () {
  "use strict";
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    var field = document.getElementById(button.getAttribute("data-copy"));
    var state = document.querySelector("[data-copy-state]");
    button.addEventListener("click", function () {
      field.focus(); field.select();
      var done = function () { if (state) state.textContent = "Copied to the clipboard."; button.textContent = "Copied"; };
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(field.value).then(done, function () {
          if (state) state.textContent = "Selected: press Ctrl+C (⌘C) to copy.";
        });
      } else if (document.execCommand && document.execCommand("copy")) { done(); }
      else if (state) { state.textContent = "Selected: press Ctrl+C (⌘C) to copy."; }
    });
  });
  document.querySelectorAll("[data-select-on-focus]").forEach(function (input) {
    input.addEventListener("focus", function () { input.select(); });
  });
})();
