// Ferry's web interface: the map's hover card and the live pages. Pages work without it; it
// adds no markup from strings (textContent only) and runs under a CSP without inline script.
"use strict";

function hoverCard() {
  const box = document.getElementById("fleet"); // outlives the map it holds, which is redrawn
  const card = document.getElementById("card");
  if (!box || !card) return;
  box.addEventListener("mouseover", (e) => {
    const d = e.target.closest("circle.dot");
    if (!d) return;
    card.replaceChildren();
    const name = document.createElement("b");
    name.textContent = d.dataset.site;
    card.append(name);
    for (const line of ["tier " + d.dataset.tier, d.dataset.up + " up, " + d.dataset.down + " down", "health: " + d.dataset.health]) {
      const p = document.createElement("div");
      p.textContent = line;
      card.append(p);
    }
    card.hidden = false;
    place(e);
  });
  const place = (e) => {
    card.style.left = Math.max(8, Math.min(e.clientX + 14, window.innerWidth - card.offsetWidth - 8)) + "px";
    card.style.top = (e.clientY + 14) + "px";
  };
  box.addEventListener("mousemove", place);
  box.addEventListener("mouseout", (e) => {
    if (e.target.closest("circle.dot")) card.hidden = true;
  });
}

// The overview redraws its map and sites' table when a node or a site changes.
function liveMap() {
  const ov = document.querySelector("section.overview");
  if (!ov) return;
  const src = new EventSource("/events/live?since=" + encodeURIComponent(ov.dataset.since));
  // One fetch at a time; an event heard meanwhile asks for another once it ends. Each fetch
  // names the newest event heard, and the server answers with a map that holds it.
  let pending = false, again = false, newest = 0;
  const redraw = () => {
    pending = true;
    again = false;
    fetch("/map?since=" + newest, { credentials: "same-origin" }).then((r) => r.ok ? r.text() : Promise.reject(r.status)).then((html) => {
      const doc = new DOMParser().parseFromString(html, "text/html");
      document.getElementById("fleet").replaceChildren(...Array.from(doc.body.childNodes, (n) => document.importNode(n, true)));
    }).finally(() => {
      pending = false;
      if (again) redraw();
    });
  };
  src.addEventListener("event", (e) => {
    const ev = JSON.parse(e.data);
    if (!/^(node|site)\./.test(ev.type)) return;
    newest = Math.max(newest, ev.id);
    if (pending) again = true;
    else redraw();
  });
}

// liveSource opens a live stream; its page's "live" mark shows while it is connected.
function liveSource(url, mark) {
  const src = new EventSource(url);
  src.onopen = () => { mark.hidden = false; };
  src.onerror = () => { mark.hidden = true; };
  return src;
}

function liveRollout() {
  const sec = document.getElementById("rollout");
  if (!sec || !sec.dataset.live) return;
  const live = document.getElementById("ro-live");
  const src = liveSource("/rollouts/" + sec.dataset.id + "/live?since=" + encodeURIComponent(sec.dataset.since), live);
  src.addEventListener("rollout", (e) => {
    const ro = JSON.parse(e.data);
    const state = document.getElementById("ro-state");
    state.textContent = ro.state;
    state.className = "state " + stateClass(ro.state);
    state.dataset.state = ro.state;
    document.getElementById("ro-wave").textContent = ro.wave;
    document.getElementById("ro-reason").textContent = ro.reason || "";
    for (const w of ro.waves) {
      const row = document.querySelector('#waves tr[data-wave="' + CSS.escape(w.name) + '"]');
      if (!row) continue;
      const st = row.querySelector('[data-f="state"]');
      st.textContent = w.state;
      st.className = "state " + stateClass(w.state);
      st.dataset.state = w.state;
      const pr = row.querySelector('[data-f="progress"]');
      pr.max = w.nodes; pr.value = w.done; pr.textContent = w.done + "/" + w.nodes;
      for (const f of ["done", "moving", "failed", "unreachable", "nodes"]) {
        row.querySelector('[data-f="' + f + '"]').textContent = w[f] || 0;
      }
    }
    const list = document.getElementById("ro-nodes");
    list.replaceChildren();
    for (const n of ro.nodes || []) {
      const li = document.createElement("li");
      const a = document.createElement("a");
      a.href = "/nodes/" + encodeURIComponent(n.name);
      a.textContent = n.name;
      li.append(a, " (" + n.site + ", " + n.wave + "): " + n.state + " " + (n.reason || ""));
      list.append(li);
    }
    if (!list.children.length) {
      const li = document.createElement("li");
      li.className = "empty";
      li.textContent = "None.";
      list.append(li);
    }
    if (["completed", "aborted", "rolled_back"].includes(ro.state)) { src.close(); live.hidden = true; }
  });
}

function liveEvents() {
  const sec = document.getElementById("events");
  if (!sec) return;
  const src = liveSource("/events/live?since=" + encodeURIComponent(sec.dataset.since), document.getElementById("ev-live"));
  src.addEventListener("event", (e) => {
    const ev = JSON.parse(e.data);
    const tr = document.createElement("tr");
    for (const v of [ev.id, ev.time, ev.type, ev.subject, ev.actor]) {
      const td = document.createElement("td");
      td.textContent = v;
      tr.append(td);
    }
    const rows = document.getElementById("event-rows");
    rows.prepend(tr);
    while (rows.children.length > 500) rows.lastElementChild.remove();
    const empty = document.getElementById("ev-empty");
    if (empty) empty.remove();
  });
}

// The alerts page redraws its list when an alert is raised, cleared or acknowledged, unless an
// acknowledgement is being typed: then it waits for the next change.
function liveAlerts() {
  const sec = document.getElementById("alerts");
  if (!sec) return;
  const src = liveSource("/events/live?since=" + encodeURIComponent(sec.dataset.since), document.getElementById("al-live"));
  const typing = () => Array.from(document.querySelectorAll("form.ack input[name=comment]")).some((i) => i.value !== "" || i === document.activeElement);
  src.addEventListener("event", (e) => {
    if (!/^alert\./.test(JSON.parse(e.data).type) || typing()) return;
    fetch(location.href, { credentials: "same-origin" }).then((r) => r.ok ? r.text() : Promise.reject(r.status)).then((html) => {
      const fresh = new DOMParser().parseFromString(html, "text/html").getElementById("alert-list");
      if (fresh && !typing()) document.getElementById("alert-list").replaceChildren(...Array.from(fresh.childNodes, (n) => document.importNode(n, true)));
    });
  });
}

function stateClass(s) {
  switch ((s || "").toUpperCase()) {
    case "OK": case "RUNNING": case "UP": case "DONE": case "COMPLETED": return "ok";
    case "WARNING": case "ROLLED_BACK": case "PAUSED": case "HALTED": case "SOAKING": case "AWAITING_APPROVAL": case "ROLLING_BACK": return "warning";
    case "CRITICAL": case "FAILED": case "CRASHLOOP": case "ABORTED": return "critical";
    case "UNKNOWN": case "DOWN": case "UNREACHABLE": return "unreachable";
  }
  return "";
}

// The site filters apply as soon as the status changes.
function filters() {
  const s = document.getElementById("f-status");
  if (s) s.addEventListener("change", () => s.form.submit());
}

document.addEventListener("DOMContentLoaded", () => { hoverCard(); liveMap(); liveRollout(); liveEvents(); liveAlerts(); filters(); });
