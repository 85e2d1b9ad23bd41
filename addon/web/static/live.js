// The live page: polls /live?format=json with the last cursor and puts each interception that ended on top.
// Rows are built with textContent only: nothing from the audit is ever parsed as HTML.
"use strict";

(function () {
  const INTERVAL_MS = 2000;
  const MAX_ROWS = 500;
  const table = document.getElementById("live");
  const body = document.getElementById("live-rows");
  const state = document.getElementById("live-state");
  const empty = document.getElementById("live-empty");
  let next = table.dataset.next || "";

  function cell(row, text, cls) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text == null ? "" : String(text);
    row.appendChild(td);
    return td;
  }

  function count(n) {
    return (n || 0).toLocaleString("en-US");
  }

  function add(i) {
    const row = document.createElement("tr");
    row.className = "fresh";
    const when = cell(row, "", "time");
    const link = document.createElement("a");
    link.href = "/sessions/" + encodeURIComponent(i.session_id) + "#i-" + i.id;
    link.textContent = i.when;
    when.appendChild(link);
    for (const key of ["user", "client", "provider_name", "model"]) cell(row, i[key]);
    const status = document.createElement("span");
    status.className = "status status-" + (i.status || "running");
    status.textContent = i.status || "in progress";
    cell(row, "").appendChild(status);
    cell(row, count(i.input_tokens), "num");
    cell(row, count(i.output_tokens), "num");
    cell(row, i.cost, "num money");
    cell(row, i.error ? i.error.slice(0, 80) : "", "error-cell");
    body.insertBefore(row, body.firstChild);
  }

  async function poll() {
    try {
      const url = "/live?format=json" + (next ? "&after=" + encodeURIComponent(next) : "");
      const answer = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      if (!answer.ok) throw new Error("HTTP " + answer.status);
      const data = await answer.json();
      for (const i of data.interceptions) add(i);
      if (data.interceptions.length) empty.hidden = true;
      while (body.rows.length > MAX_ROWS) body.deleteRow(-1);
      next = data.next || next;
      state.textContent = "live · updated " + new Date().toLocaleTimeString();
      state.classList.remove("stale");
    } catch (e) {
      state.textContent = "not updating (" + e.message + "); retrying";
      state.classList.add("stale");
    }
    setTimeout(poll, INTERVAL_MS);
  }

  setTimeout(poll, INTERVAL_MS);
})();
