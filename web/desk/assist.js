// Branchline agent desktop: agent-assisted IVR. During a call the agent starts
// one of the tenant's flows for the customer (POST /api/v1/assists): both hear its
// prompts, either answers it by keys, and when it ends the customer is back with the
// agent and the flow's results (a secret input masked) are shown here.
// Plugs into desk.js through window.BranchlineDesk; no inline script (CSP).
(function () {
  const desk = window.BranchlineDesk;
  if (!desk) return;
  const $ = (id) => document.getElementById(id);
  const POLL_MS = 1000;
  let job = null; // {id, flow, state, results}
  let pollTimer = null;

  function flows() {
    const session = desk.session();
    return (session && session.assist_flows) || [];
  }

  function render() {
    const talking = desk.call().state === "talking";
    const box = $("assist");
    box.hidden = !(desk.session() && flows().length && (talking || job));
    if (box.hidden) return;
    const select = $("assist-flow");
    const names = flows();
    if ([...select.options].map((o) => o.value).join() !== names.join()) {
      select.replaceChildren(...names.map((name) => {
        const option = document.createElement("option");
        option.value = option.textContent = name;
        return option;
      }));
    }
    const running = job !== null && job.state === "running";
    $("assist-start").disabled = running || !talking;
    select.disabled = running;
    $("assist-stop").hidden = !running;
    const status = $("assist-status");
    status.dataset.state = job ? job.state : "";
    status.dataset.assist = job ? job.id : "";
    status.textContent = job ? desk.t(`assist.${job.state}`, { flow: job.flow }) : "";
    $("assist-results").replaceChildren(...Object.entries((job && job.results) || {})
      .flatMap(([key, value]) => {
        const dt = document.createElement("dt");
        const dd = document.createElement("dd");
        dt.textContent = key;
        dd.dataset.key = key;
        dd.textContent = value;
        return [dt, dd];
      }));
  }

  async function act(fn) {
    try {
      await fn();
    } catch (err) {
      $("assist-status").dataset.state = "error";
      $("assist-status").textContent = err.message;
      return;
    }
    render();
  }

  function poll() {
    window.clearTimeout(pollTimer);
    if (!job || job.state !== "running") return;
    pollTimer = window.setTimeout(() => act(async () => {
      job = await desk.api("GET", `assists/${encodeURIComponent(job.id)}`);
      poll();
    }), POLL_MS);
  }

  $("assist-start").addEventListener("click", () => act(async () => {
    job = await desk.api("POST", "assists", { flow: $("assist-flow").value });
    poll();
  }));
  $("assist-stop").addEventListener("click", () => act(async () => {
    job = await desk.api("DELETE", `assists/${encodeURIComponent(job.id)}`);
  }));
  desk.on("render", render);
  desk.on("ended", () => {
    // the call is over: nothing more to show or ask
    window.clearTimeout(pollTimer);
    job = null;
    render();
  });
})();
