// trustroot console: live rollout progress and confirmations. No inline script (the CSP forbids it).
"use strict";

function setText(row, field, text) {
  const cell = row.querySelector('[data-field="' + field + '"]');
  if (cell) { cell.textContent = text; }
}

async function refreshRollout(row) {
  const id = row.getAttribute("data-rollout");
  try {
    const answer = await fetch("/console/rollouts/" + encodeURIComponent(id) + ".json", { credentials: "same-origin" });
    if (!answer.ok) { return; }
    const r = await answer.json();
    const previous = row.className;
    row.className = "rollout state-" + r.state;
    setText(row, "state", r.state);
    setText(row, "stage", r.stage + " of " + r.stages.length + " (" + r.percent + " %)");
    setText(row, "counts", r.succeeded + " installed / " + r.offered + " offered");
    setText(row, "failures", r.failed + " failed (" + (r.failure_share * 100).toFixed(1) + " % of window; pause at " + (r.failure_threshold * 100).toFixed(1) + " %)");
    const meter = row.querySelector('[data-field="meter"]');
    if (meter) { meter.max = Math.max(r.offered, 1); meter.value = r.succeeded; }
    if (previous !== row.className && previous.indexOf("state-active") >= 0) {
      // The state changed under us (e.g. paused itself on failures): reload for the right buttons.
      window.location.reload();
    }
  } catch (e) { /* the next tick tries again */ }
}

document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("form.confirm").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm") || "Are you sure?")) { event.preventDefault(); }
    });
  });
  const rows = document.querySelectorAll("tr.rollout.state-active, tr.rollout.state-paused");
  if (rows.length) {
    window.setInterval(function () { rows.forEach(refreshRollout); }, 2000);
  }
});
