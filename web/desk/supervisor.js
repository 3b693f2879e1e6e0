// Branchline agent desktop: the supervisor's panel (shown to agents the plan marks as
// supervisors). A wallboard of the tenant's queues (waiting, longest wait, service level,
// answered, abandoned) and agents (state, time in it), no-answer alerts, forcing an
// agent's state, and monitoring an agent's call: the node rings this desktop's softphone,
// which answers by itself, and mixes it into the call as listen, whisper or barge.
// Plugs into desk.js through window.BranchlineDesk; no inline script (the CSP forbids it).
(function () {
  const desk = window.BranchlineDesk;
  if (!desk) return;
  const $ = (id) => document.getElementById(id);
  const MODES = ["listen", "whisper", "barge"];
  const FORCE = ["ready", "not_ready", "break", "logged_out"];
  const ALERTS_KEPT = 5;
  let monitor = null; // {id, agent, mode, state}
  let asked = null; // the agent of a monitoring asked for: the node may ring before it answers
  let alerts = []; // {text, agent (a break request to approve) or null}

  function isSupervisor() {
    const session = desk.session();
    return Boolean(session && session.supervisor);
  }

  function clock(seconds) {
    const s = Math.max(0, Math.round(seconds || 0));
    const m = Math.floor(s / 60);
    return `${m}:${String(s % 60).padStart(2, "0")}`;
  }

  function cell(text, cls) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text;
    return td;
  }

  function button(label, data, enabled) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = desk.t(label);
    Object.assign(b.dataset, data);
    b.disabled = !enabled;
    return b;
  }

  function render() {
    const panel = $("supervisor-panel");
    panel.hidden = !isSupervisor();
    if (panel.hidden) {
      monitor = null;
      alerts = [];
      return;
    }
    const snapshot = desk.snapshot() || { queues: [], agents: [] };
    $("wallboard").tBodies[0].replaceChildren(...snapshot.queues.map((q) => {
      const row = document.createElement("tr");
      row.dataset.queue = q.name;
      const level = q.service_level === null ? "–" : `${Math.round(100 * q.service_level)}%`;
      row.append(cell(q.name), cell(String(q.waiting), "n waiting"),
                 cell(clock(q.longest_wait), "n longest"), cell(level, "n level"),
                 cell(String(q.answered), "n answered"), cell(String(q.abandoned), "n abandoned"));
      if (q.service_level_met === false) row.classList.add("late");
      return row;
    }));
    const me = desk.session().agent;
    $("sup-agents").tBodies[0].replaceChildren(...snapshot.agents.filter((a) => a.id !== me)
      .map((a) => {
        const row = document.createElement("tr");
        row.dataset.agent = a.id;
        row.dataset.state = a.state;
        const stateText = desk.t(`state.${a.state}`) + (a.reason ? ` (${a.reason})` : "");
        row.append(cell(a.id), cell(stateText, "state"), cell(clock(a.in_state), "n time"));
        const actions = document.createElement("td");
        actions.className = "actions";
        const talking = ["talking", "hold"].includes(a.state) && monitor === null;
        for (const mode of MODES) {
          actions.append(button(`sup.${mode}`, { monitor: mode, agent: a.id }, talking));
        }
        for (const state of FORCE) {
          actions.append(button(`sup.force.${state}`, { force: state, agent: a.id },
                                a.state !== state && a.state !== "logged_out"));
        }
        row.append(actions);
        return row;
      }));
    const box = $("sup-monitor");
    box.hidden = monitor === null;
    if (monitor) {
      const status = $("sup-monitor-status");
      status.dataset.state = monitor.state;
      status.dataset.mode = monitor.mode;
      status.textContent = desk.t("sup.monitoringAgent", {
        agent: monitor.agent, mode: desk.t(`sup.${monitor.mode}`) });
      for (const mode of MODES) {
        $(`sup-mode-${mode}`).setAttribute("aria-pressed", String(monitor.mode === mode));
      }
    }
    $("sup-alerts").replaceChildren(...alerts.map((alert) => {
      const li = document.createElement("li");
      li.textContent = alert.text;
      if (alert.agent) {
        li.dataset.breakRequest = alert.agent;
        li.append(" ", button("sup.approveBreak", { approve: alert.agent }, true));
      }
      return li;
    }));
  }

  async function act(fn) {
    $("sup-error").textContent = "";
    try {
      await fn();
    } catch (err) {
      $("sup-error").textContent = err.message;
    }
    render();
  }

  function startMonitor(agent, mode) {
    asked = { agent, answered: false };
    return act(async () => {
      try {
        monitor = await desk.api("POST", "monitors", { agent, mode });
        if (asked.answered) monitor.state = "active";
      } finally {
        asked = null;
      }
    });
  }

  function changeMode(mode) {
    if (!monitor) return Promise.resolve();
    return act(async () => {
      monitor = await desk.api("PUT", `monitors/${encodeURIComponent(monitor.id)}`, { mode });
    });
  }

  function stopMonitor() {
    if (!monitor) return Promise.resolve();
    const id = monitor.id;
    monitor = null;
    return act(() => desk.api("DELETE", `monitors/${encodeURIComponent(id)}`));
  }

  function force(agent, state) {
    return act(async () => {
      await desk.api("PUT", `agents/${encodeURIComponent(agent)}/state`, { state });
      desk.refresh();
    });
  }

  desk.on("render", render);
  function alert(text, agent) {
    alerts = [{ text, agent: agent || null }, ...alerts].slice(0, ALERTS_KEPT);
    render();
  }

  desk.on("event", (type, doc) => {
    if (!isSupervisor()) return;
    const at = new Date().toLocaleTimeString();
    if (type === "NoAnswer") {
      alert(desk.t("sup.noAnswer", { agent: doc.agent, queue: doc.queue || "", at }));
    } else if (type === "BreakRefused" && doc.agent !== desk.session().agent) {
      // R-5.2d: over the maximum the request is refused; the supervisor may grant it
      alert(desk.t("sup.breakAsked", { agent: doc.agent, at, onBreak: doc.on_break,
                                       maximum: doc.maximum }), doc.agent);
    } else if (type === "BreakApproved") {
      alerts = alerts.map((a) => (a.agent === doc.agent ? { text: a.text, agent: null } : a));
      render();
    }
  });
  desk.on("ended", () => {
    // the supervisor's leg ended: stopped here, or the monitored call is over
    if (monitor && monitor.state === "active") {
      monitor = null;
      render();
    }
  });
  desk.on("incoming", (data) => {
    // the node rings a supervisor's softphone for the monitoring it asked for (its call
    // may come before the API's answer)
    const wanted = monitor || asked;
    if (!isSupervisor() || !wanted || !data.has("monitor")
        || data.get("agent") !== wanted.agent) return;
    if (monitor) monitor.state = "active";
    else asked.answered = true;
    desk.answer();
    render();
  });

  $("sup-alerts").addEventListener("click", (e) => {
    const b = e.target.closest("button[data-approve]");
    if (b) force(b.dataset.approve, "break");
  });
  $("sup-agents").addEventListener("click", (e) => {
    const b = e.target.closest("button");
    if (!b || b.disabled) return;
    if (b.dataset.monitor) startMonitor(b.dataset.agent, b.dataset.monitor);
    else if (b.dataset.force) force(b.dataset.agent, b.dataset.force);
  });
  for (const mode of MODES) {
    $(`sup-mode-${mode}`).addEventListener("click", () => changeMode(mode));
  }
  $("sup-stop").addEventListener("click", stopMonitor);
})();
