// Cairn's dashboard: live updates over server-sent events, confirmations, and a selection that
// survives the live updates. The server renders and escapes every fragment; nothing here builds
// markup from a run's values (log lines are set as text).
"use strict";

function keepSelection(tbody, apply) {
  const checked = new Set(
    Array.from(tbody.querySelectorAll("input[type=checkbox]:checked")).map((box) => box.value),
  );
  apply();
  tbody.querySelectorAll("input[type=checkbox]").forEach((box) => {
    if (checked.has(box.value)) box.checked = true;
  });
}

function follow(el) {
  const source = new EventSource(el.dataset.stream);
  source.addEventListener(el.dataset.event, (e) => {
    keepSelection(el, () => { el.innerHTML = e.data; });
    el.dataset.updated = String(Date.now());
  });
  source.addEventListener("end", () => source.close());
}

function followLog(pre) {
  const source = new EventSource(pre.dataset.log);
  source.addEventListener("line", (e) => {
    pre.append(document.createTextNode(e.data + "\n"));
  });
  source.addEventListener("end", () => { source.close(); pre.dataset.ended = "true"; });
  source.onerror = () => { if (pre.dataset.ended) source.close(); };
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-stream]").forEach(follow);
  document.querySelectorAll("pre[data-log]").forEach(followLog);
  document.addEventListener("submit", (e) => {
    const form = e.target;
    if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      e.preventDefault();
    }
  });
});
