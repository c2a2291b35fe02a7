// The dashboard's only script: the token for actions (kept in localStorage, sent in a header,
// never a cookie), the action buttons, the job filter, live updates from /api/events (the page's
// live part is fetched again as a fragment) and the run log's live follow.
(function () {
  "use strict";
  const KEY = "cron-scheduler-token";
  const page = document.body.dataset.page;
  const flash = (text, ok) => {
    const el = document.getElementById("flash");
    el.textContent = text;
    el.className = ok ? "ok" : "error";
  };

  const form = document.getElementById("token-form");
  if (form) {
    const input = document.getElementById("token"), state = document.getElementById("token-state");
    const show = () => { state.textContent = localStorage.getItem(KEY) ? "token set" : "no token: actions refused"; };
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      if (input.value.trim()) localStorage.setItem(KEY, input.value.trim()); else localStorage.removeItem(KEY);
      input.value = "";
      show();
    });
    show();
  }

  document.addEventListener("click", async (e) => {
    const button = e.target.closest("button.act");
    if (!button) return;
    e.preventDefault();
    button.disabled = true;
    try {
      const response = await fetch(button.dataset.action, {
        method: "POST", headers: {"X-Token": localStorage.getItem(KEY) || ""}, credentials: "same-origin"});
      const body = await response.json().catch(() => ({}));
      if (!response.ok) flash(body.error || response.statusText, false);
      else if (body.run_ids && body.run_ids.length) flash(`${body.request}: runs ${body.run_ids.join(", ")}`, true);
      else flash(body.result ? `${body.request}: ${body.result}` : (body.queued ? "queued: no daemon is running" : "done"), true);
      refresh();
    } catch (err) {
      flash(String(err), false);
    } finally {
      button.disabled = false;
    }
  });

  function applyFilter() {
    const text = document.getElementById("filter"), status = document.getElementById("status-filter");
    if (!text) return;
    const q = text.value.trim().toLowerCase(), s = status.value;
    document.querySelectorAll("#jobs tr.job").forEach((row) => {
      const hit = (!q || row.textContent.toLowerCase().includes(q)) && (!s || row.dataset.status === s);
      row.classList.toggle("hidden", !hit);
    });
  }
  ["filter", "status-filter"].forEach((id) => {
    const el = document.getElementById(id);
    if (el) el.addEventListener("input", applyFilter);
  });

  let pending = null;
  async function refresh() {
    if (pending) return;
    pending = setTimeout(async () => {
      pending = null;
      const url = new URL(window.location.href);
      url.searchParams.set("fragment", "1");
      try {
        const response = await fetch(url, {credentials: "same-origin"});
        if (response.ok) {
          document.getElementById("live-part").innerHTML = await response.text();
          applyFilter();
        }
      } catch (err) { /* the next event tries again */ }
    }, 300);
  }

  if (window.EventSource) {
    const source = new EventSource("/api/events");
    const dot = document.getElementById("live");
    source.onopen = () => dot.classList.add("on");
    source.onerror = () => dot.classList.remove("on");
    source.addEventListener("run", (e) => {
      const event = JSON.parse(e.data);
      const log = document.getElementById("log");
      if (page === "run" && log && String(event.run_id) !== log.dataset.run) return;
      if (page === "job" && !document.querySelector(`h1`).textContent.includes(event.job_id)) return;
      refresh();
    });
  }
  if (page === "timeline") setInterval(refresh, 30000);  // the bars of running runs grow

  const log = document.getElementById("log");
  if (log && log.dataset.follow === "1" && window.EventSource) {
    const stream = new EventSource(`/api/runs/${log.dataset.run}/log/stream?offset=${log.dataset.offset}`);
    let first = true;
    stream.addEventListener("log", (e) => {
      const chunk = JSON.parse(e.data);
      const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
      if (first) { log.textContent = chunk.text; first = false; } else log.textContent += chunk.text;
      if (atEnd) log.scrollTop = log.scrollHeight;
    });
    stream.addEventListener("end", (e) => {
      stream.close();
      const state = document.getElementById("follow-state");
      if (state) state.textContent = `run ended: ${JSON.parse(e.data).status}`;
      refresh();
    });
  }
})();
