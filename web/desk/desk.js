// Branchline agent desktop (docs/DESK.md), served by the node at /desk/.
//
// Theory of operation
// -------------------
// Plain browser JavaScript, no framework and no build step. The page is static; what
// it knows comes from the node's API on the same origin:
//
//   config.json                    the edge's SIP/WebSocket URLs (before sign-in)
//   POST ../api/v1/agent-sessions  sign-in: {token, tenant, agent, extension, name}
//   PUT  ../api/v1/agents/<me>/state, DELETE ../api/v1/agent-sessions/current
//   GET  ../api/v1/acd             the wallboard snapshot (queues, agents, team)
//   GET  ../api/v1/acd/events      server-sent events, read with fetch() because
//                                  EventSource cannot send the Authorization header
//   GET  ../api/v1/acd/daily       today's statistics record: the agent's own day
//
// The live panel is drawn from the snapshot: fetched when the event stream connects,
// again (debounced) after each event, and every REFRESH_MS for the other agents'
// changes, which an agent's own stream does not carry. The agent's own state is
// applied at once from its AgentStateChanged events; the time in state ticks locally.
// The agent's own day (R-5.2c: calls answered, talk, after-call work, outbound, not
// ready and break periods and time) comes from the daily record, fetched after each
// snapshot but at most once per DAY_MIN_MS; the current state's time ticks on locally.
//
// The softphone (softphone.js, the JsSIP bundle) registers as the agent's extension
// with the SIP password typed at sign-in; an offer from the ACD rings it with the
// call's data in the INVITE's X-BL-Data header (url-encoded key=value pairs: queue,
// agent, language and what the IVR collected), shown as the screen pop. An offer made
// in the tenant's night hours carries night=1: the pop shows a badge and the page sounds
// a two-tone alert (WebAudio) until the call is answered or ends (R-5.2a).
//
// Transfers (the transfer panel during a call): "Transfer" sends a blind REFER to an
// agent id, a queue name or a number (sip:<target>@<domain>, with the note as
// ?X-BL-Data=note%3D... so it pops up at the next agent); the node rings the agent,
// queues the caller or calls the number, and the call is hung up here once the node's
// NOTIFY says it succeeded (a failure leaves the caller with the agent). "Consult" holds
// the call and calls a number or extension; "Complete transfer" sends a REFER with
// Replaces joining the two, "Cancel consult" hangs up the second call and resumes.
// "Conference" (POST ../api/v1/conferences) joins the caller, the agent and the consulted
// party: the node hangs up the second call, the page takes the first off hold, shows it
// as a conference and follows it (GET ../api/v1/conferences/<id>) until one party left.
"use strict";

(function () {
  const LANGUAGES = ["en", "zh-Hans", "zh-Hant"];
  const STATES = ["logged_out", "ready", "not_ready", "reserved", "talking", "hold",
                  "wrap_up", "break"];
  // the ACD's and a supervisor's, not the tenant's
  const OWN_REASONS = ["no_answer", "declined", "login", "supervisor"];
  const REFRESH_MS = 5000;
  const DAY_MIN_MS = 2000; // the daily record is fetched at most this often
  const API = new URL("../api/v1/", window.location.href);

  const $ = (id) => document.getElementById(id);
  let labels = {};
  let language = "en";
  let config = { ws_url: null, wss_url: null };
  let session = null; // {token, tenant, agent, extension, name, domain}
  let phone = null;
  let stream = null; // AbortController of the event stream
  let refreshTimer = null;
  let pollTimer = null;
  let snapshot = null;
  let own = { state: "", reason: "", since: 0, outbound: false };
  let ownDay = null; // {record: the agent's daily record or null, at: performance.now()}
  let dayTimer = null;
  let dayLast = -Infinity; // performance.now() of the last daily request
  let dayBusy = false; // a daily request is on its way
  let dayAgain = false; // and another is wanted after it
  let audio = null; // the AudioContext of the night-time alert
  let nightAlert = null; // {timer, gain} while the alert sounds
  let call = { state: "idle", held: false, muted: false };
  let transfer = { state: "", target: "", cause: "" }; // the panel's status line
  let consult = null; // {target, state: "calling" | "talking"} during a consultation
  let conference = null; // {id, target, timer} while the call is a three-way conference
  const CONFERENCE_POLL_MS = 1000;
  let phoneState = { key: "phone.off", vars: {} };
  let streamState = "connecting";

  // ------------------------------------------------------------------ labels
  function t(key, vars) {
    let text = Object.prototype.hasOwnProperty.call(labels, key) ? labels[key] : key;
    for (const [name, value] of Object.entries(vars || {})) {
      text = text.split(`{${name}}`).join(String(value));
    }
    return text;
  }

  function preferredLanguage() {
    const saved = window.localStorage && window.localStorage.getItem("desk.language");
    if (LANGUAGES.includes(saved)) return saved;
    for (const tag of navigator.languages || [navigator.language || "en"]) {
      const lower = tag.toLowerCase();
      if (lower.startsWith("zh")) {
        const traditional = /-(hant|tw|hk|mo)\b/.test(lower);
        return traditional ? "zh-Hant" : "zh-Hans";
      }
      if (lower.startsWith("en")) return "en";
    }
    return "en";
  }

  async function setLanguage(wanted) {
    const lang = LANGUAGES.includes(wanted) ? wanted : "en";
    const resp = await fetch(`i18n/${lang}.json`, { cache: "no-store" });
    if (!resp.ok) throw new Error(`labels ${lang}: HTTP ${resp.status}`);
    labels = await resp.json();
    language = lang;
    document.documentElement.lang = lang;
    $("language").value = lang;
    if (window.localStorage) window.localStorage.setItem("desk.language", lang);
    for (const el of document.querySelectorAll("[data-i18n]")) {
      el.textContent = t(el.dataset.i18n);
    }
    for (const el of document.querySelectorAll("[data-i18n-label]")) {
      el.setAttribute("aria-label", t(el.dataset.i18nLabel));
    }
    renderAll();
  }

  // ------------------------------------------------------------------ API
  class ApiError extends Error {
    constructor(status, id, message) {
      super(message || id);
      this.status = status;
      this.id = id;
    }
  }

  async function api(method, path, body) {
    const headers = {};
    if (session) headers.Authorization = `Bearer ${session.token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const resp = await fetch(new URL(path, API), {
      method, headers, cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (resp.status === 204) return null;
    const doc = await resp.json().catch(() => null);
    if (!resp.ok) {
      const err = (doc && doc.error) || {};
      if (resp.status === 401 && session && path !== "agent-sessions") signedOutByNode();
      throw new ApiError(resp.status, err.id || `http_${resp.status}`,
                         err.message || resp.statusText);
    }
    return doc;
  }

  // ------------------------------------------------------------------ sign-in / out
  async function signIn(event) {
    event.preventDefault();
    const domain = $("domain").value.trim();
    const agent = $("agent").value.trim();
    const password = $("password").value;
    const sipPassword = $("sip-password").value;
    $("sign-in-error").textContent = "";
    if (!domain || !agent || !password) {
      $("sign-in-error").textContent = t("signIn.missing");
      return;
    }
    $("sign-in-button").disabled = true;
    try {
      const doc = await api("POST", "agent-sessions", { domain, agent, password });
      session = Object.assign({ domain }, doc);
    } catch (err) {
      $("sign-in-error").textContent = err instanceof ApiError && err.status === 401
        ? t("signIn.refused") : t("signIn.unreachable", { message: err.message });
      return;
    } finally {
      $("sign-in-button").disabled = false;
      $("password").value = "";
    }
    $("sign-in").hidden = true;
    $("desk").hidden = false;
    own = { state: "not_ready", reason: "login", since: performance.now(), outbound: false };
    renderAll();
    startPhone(sipPassword);
    $("sip-password").value = "";
    useOwnPhone($("own-phone").value.trim());
    startEvents();
    pollTimer = window.setInterval(refreshSnapshot, REFRESH_MS);
    $("ready").focus();
  }

  // PC + phone mode (R-5.1): queue calls ring the agent's own mobile or landline
  async function useOwnPhone(number) {
    if (!number || !session) return;
    try {
      await api("PUT", `agents/${encodeURIComponent(session.agent)}/phone`, { number });
      $("own-phone-status").textContent = t("phone.ownPhone", { number });
      $("own-phone-status").hidden = false;
    } catch (err) {
      $("state-error").textContent = t("phone.ownPhoneRefused", { message: err.message });
    }
  }

  async function signOut() {
    try {
      await api("DELETE", "agent-sessions/current");
    } catch (err) {
      // the session may already be gone on the node (restart, plan change): leave anyway
      console.warn("desk: sign-out", err);
    }
    leave();
  }

  function signedOutByNode() {
    leave();
    $("sign-in-error").textContent = t("signIn.expired");
  }

  function leave() {
    session = null;
    if (stream) stream.abort();
    stream = null;
    window.clearInterval(pollTimer);
    window.clearTimeout(refreshTimer);
    window.clearTimeout(dayTimer);
    dayTimer = null;
    dayAgain = false;
    stopPhone();
    snapshot = null;
    ownDay = null;
    own = { state: "", reason: "", since: 0, outbound: false };
    $("desk").hidden = true;
    $("sign-in").hidden = false;
    $("break-result").textContent = "";
    $("state-error").textContent = "";
    $("own-phone-status").hidden = true;
    renderAll();
    $("password").focus();
  }

  // ------------------------------------------------------------------ state changes
  async function changeState(state, reason) {
    if (!session) return;
    $("state-error").textContent = "";
    $("break-result").textContent = "";
    $("break-result").dataset.result = "";
    try {
      const doc = await api("PUT", `agents/${encodeURIComponent(session.agent)}/state`,
                            reason === undefined ? { state } : { state, reason });
      if (state === "break") {
        $("break-result").dataset.result = doc.approved ? "approved" : "refused";
        $("break-result").textContent = t(doc.approved ? "break.approved" : "break.refused");
      }
    } catch (err) {
      $("state-error").textContent = err.id === "invalid_agent_transition"
        ? t("state.refused") : err.message;
    }
    scheduleRefresh(0);
  }

  function notReadyReason() {
    return $("reason-select").hidden ? $("reason-text").value.trim() : $("reason-select").value;
  }

  // ------------------------------------------------------------------ live panel
  function scheduleRefresh(delay) {
    window.clearTimeout(refreshTimer);
    refreshTimer = window.setTimeout(refreshSnapshot, delay);
  }

  async function refreshSnapshot() {
    if (!session) return;
    try {
      snapshot = await api("GET", "acd");
    } catch (err) {
      console.warn("desk: snapshot", err);
      return;
    }
    const me = snapshot.agents.find((a) => a.id === session.agent);
    if (me) {
      own = { state: me.state, reason: me.reason,
              since: performance.now() - 1000 * me.in_state, outbound: !!me.outbound };
    }
    renderAll();
    scheduleDay();
  }

  // The agent's own day, with the snapshot: at most one request per DAY_MIN_MS, one at
  // a time; a refresh asked for meanwhile comes after (so the last change is shown).
  function scheduleDay() {
    if (!session || dayTimer !== null) return;
    if (dayBusy) {
      dayAgain = true;
      return;
    }
    const wait = Math.max(0, dayLast + DAY_MIN_MS - performance.now());
    dayTimer = window.setTimeout(refreshDay, wait);
  }

  async function refreshDay() {
    dayTimer = null;
    const mine = session;
    if (!mine) return;
    dayBusy = true;
    dayLast = performance.now();
    try {
      const doc = await api("GET", "acd/daily");
      if (session === mine) {
        const record = (doc.agents || []).find((a) => a.agent === mine.agent) || null;
        ownDay = { record, at: performance.now() };
        renderDay();
      }
    } catch (err) {
      console.warn("desk: daily record", err);
    } finally {
      dayBusy = false;
      if (dayAgain) {
        dayAgain = false;
        scheduleDay();
      }
    }
  }

  function onEvent(type, doc) {
    if (type === "AgentStateChanged" && session && doc.agent === session.agent) {
      const busy = ["talking", "hold"];
      const outbound = doc.state === "talking" && doc.cause === "outbound" ? true
        : busy.includes(doc.state) && busy.includes(doc.previous) && own.outbound;
      own = { state: doc.state, reason: doc.reason || "", since: performance.now(), outbound };
      renderOwn();
    }
    emit("event", type, doc);
    scheduleRefresh(200);
  }

  // Read the server-sent events with fetch (EventSource cannot send a bearer token);
  // reconnect with a growing delay while signed in.
  async function startEvents() {
    const controller = new AbortController();
    stream = controller;
    let delay = 1000;
    while (session && stream === controller) {
      try {
        const resp = await fetch(new URL("acd/events", API), {
          headers: { Authorization: `Bearer ${session.token}`, Accept: "text/event-stream" },
          cache: "no-store", signal: controller.signal,
        });
        if (resp.status === 401) {
          signedOutByNode();
          return;
        }
        if (!resp.ok || !resp.body) throw new Error(`HTTP ${resp.status}`);
        setStream("live");
        delay = 1000;
        refreshSnapshot();
        await readEvents(resp.body);
      } catch (err) {
        if (controller.signal.aborted) return;
        console.warn("desk: event stream", err);
      }
      if (!session || stream !== controller) return;
      setStream("retrying");
      await new Promise((resolve) => window.setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 15000);
    }
  }

  async function readEvents(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let type = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith(":")) continue; // a comment (keep-alive)
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "event") type = text;
          else if (field === "data") data.push(text);
        }
        if (data.length) {
          try {
            onEvent(type, JSON.parse(data.join("\n")));
          } catch (err) {
            console.warn("desk: bad event", err);
          }
        }
      }
    }
  }

  function setStream(state) {
    streamState = state;
    renderStream();
  }

  // ------------------------------------------------------------------ softphone
  function wsUrl() {
    if (window.location.protocol === "https:") return config.wss_url; // ws:// is blocked
    return config.ws_url || config.wss_url;
  }

  function startPhone(sipPassword) {
    const url = wsUrl();
    if (!url) return setPhone("phone.noWebsocket");
    if (typeof window.Softphone !== "function") return setPhone("phone.noBundle");
    if (!sipPassword || !session.extension) return setPhone("phone.noPassword");
    setPhone("phone.connecting");
    try {
      phone = window.Softphone({
        wsUrl: url, uri: `sip:${session.extension}@${session.domain}`,
        password: sipPassword, displayName: session.name || session.agent,
        remoteAudio: $("remote-audio"),
      });
    } catch (err) {
      return setPhone("phone.failed", { cause: err.message });
    }
    const mine = phone;
    const on = (name, fn) => mine.on(name, (detail) => {
      if (phone === mine) fn(detail || {});
    });
    on("registered", () => setPhone("phone.registered"));
    on("unregistered", () => setPhone("phone.unregistered"));
    on("registrationFailed", (d) => setPhone("phone.failed", { cause: d.cause }));
    on("disconnected", () => setPhone("phone.disconnected"));
    on("incoming", () => setCall("ringing"));
    on("progress", () => { if (call.state === "calling") setCall("calling"); });
    on("confirmed", () => setCall("talking"));
    on("hold", (d) => { if (d.originator === "local") setCall("talking", { held: true }); });
    on("unhold", (d) => { if (d.originator === "local") setCall("talking", { held: false }); });
    on("muted", () => setCall(call.state, { muted: true }));
    on("unmuted", () => setCall(call.state, { muted: false }));
    on("ended", () => endCall());
    on("failed", () => endCall());
    on("consultProgress", () => renderTransfer());
    on("consultConfirmed", () => {
      if (!consult) return;
      consult.state = "talking";
      setTransfer("consultReady", consult.target);
    });
    on("consultEnded", () => {
      if (!consult) return;
      const target = consult.target;
      consult = null;
      if (transfer.state === "consulting" || transfer.state === "consultReady") {
        setTransfer("consultEnded", target);
      }
      renderTransfer();
    });
    on("consultPromoted", () => { // the caller hung up: the consultation is the call
      consult = null;
      setTransfer("", "");
      setCall("talking", { held: false });
    });
    // The screen pop: JsSIP hands over the INVITE, whose X-BL-Data the softphone's own
    // "incoming" event does not carry. A second call while busy is refused (486) by the
    // softphone before this runs: its session has ended and is not shown.
    mine.ua.on("newRTCSession", (e) => {
      if (phone !== mine || e.originator !== "remote" || e.session.isEnded()) return;
      setTransfer("", "");
      const data = new URLSearchParams(e.request.getHeader("X-BL-Data") || "");
      showPop(e.request);
      if (data.get("night") === "1") startAlert(); // stops once answered or ended
      emit("incoming", data);
    });
    phone.register();
  }

  function stopPhone() {
    const old = phone;
    phone = null;
    endCall();
    setPhone("phone.off");
    if (!old) return;
    try {
      if (old.registered) old.unregister();
    } catch (err) {
      console.warn("desk: unregister", err);
    }
    window.setTimeout(() => old.stop(), 500); // let the un-REGISTER leave first
  }

  function setPhone(key, vars) {
    phoneState = { key, vars: vars || {} };
    renderPhone();
  }

  function setCall(state, flags) {
    if (state !== "ringing") stopAlert(); // answered, declined or ended
    call = Object.assign({}, call, { state }, flags || {});
    if (state === "idle") call = { state: "idle", held: false, muted: false };
    renderCall();
    emit("render");
  }

  function endCall() {
    consult = null;
    if (conference) {
      endConference();
      setTransfer("", "");
    }
    setCall("idle");
    $("screen-pop").hidden = true;
    emit("ended");
  }

  function showPop(request) {
    const pop = $("pop-data");
    for (const el of pop.querySelectorAll(".data")) el.remove();
    const from = request.from;
    const number = from && from.uri ? from.uri.user : "";
    const name = from && from.display_name ? ` (${from.display_name})` : "";
    $("pop-caller").textContent = `${number || t("pop.unknown")}${name}`;
    const data = new URLSearchParams(request.getHeader("X-BL-Data") || "");
    const known = ["queue", "language", "transferred_by", "note"];
    const HIDDEN_DATA = ["agent", "night", "contact"]; // contact: the wrap-up's (wrapup.js)
    const keys = [...known.filter((k) => data.has(k)),
                  ...[...new Set(data.keys())].filter((k) => !known.includes(k)
                                                          && !HIDDEN_DATA.includes(k))];
    $("pop-night").hidden = data.get("night") !== "1";
    for (const key of keys) {
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      dt.className = dd.className = "data";
      dt.dataset.label = known.includes(key) ? `pop.${key}` : "";
      dt.textContent = known.includes(key) ? t(`pop.${key}`) : key;
      dd.dataset.key = key;
      dd.textContent = data.getAll(key).join(", ");
      pop.append(dt, dd);
    }
    showCustomerRecord(number, data);
    $("screen-pop").hidden = false;
  }

  // R-X.2: the tenant's customer record, its URL template filled in from the call
  function showCustomerRecord(number, data) {
    const link = $("pop-crm");
    const template = session && session.crm_url;
    link.hidden = !template;
    if (!template) return;
    link.href = template.replace(/\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, key) =>
      encodeURIComponent(key === "caller" ? number : data.get(key) || ""));
  }

  function phoneAction(fn) {
    if (!phone) return;
    try {
      fn(phone);
    } catch (err) {
      $("state-error").textContent = err.message;
    }
  }

  function pressKey(key) {
    if (phone && call.state === "talking") phoneAction((p) => p.sendDTMF(key));
    else $("number").value += key;
  }

  function dial(event) {
    event.preventDefault();
    const number = $("number").value.trim();
    if (!number || !phone || call.state !== "idle") return;
    phoneAction((p) => {
      p.call(number);
      setCall("calling");
    });
  }

  // ------------------------------------------------------------------ night-time alert
  // R-5.2a: a two-tone burst (880/660 Hz, four 0.2 s notes) every 1.6 s through WebAudio
  // while a night-time offer rings. body[data-alerting="true"] while it sounds (once the
  // browser lets the page's AudioContext run: the agent has clicked on the page).
  const ALERT_NOTES = [880, 660, 880, 660];
  const ALERT_NOTE_S = 0.2;
  const ALERT_EVERY_MS = 1600;

  function startAlert() {
    if (nightAlert) return;
    const Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) return;
    try {
      if (!audio || audio.state === "closed") audio = new Context();
    } catch (err) {
      console.warn("desk: no audio for the night-time alert", err);
      return;
    }
    const ctx = audio;
    const gain = ctx.createGain();
    gain.gain.value = 0.25;
    gain.connect(ctx.destination);
    const mine = { gain, timer: null };
    nightAlert = mine;
    const burst = () => {
      const t0 = ctx.currentTime + 0.02;
      const end = t0 + ALERT_NOTES.length * ALERT_NOTE_S;
      const osc = ctx.createOscillator();
      const envelope = ctx.createGain();
      ALERT_NOTES.forEach((f, i) => osc.frequency.setValueAtTime(f, t0 + i * ALERT_NOTE_S));
      envelope.gain.setValueAtTime(0, t0);
      envelope.gain.linearRampToValueAtTime(1, t0 + 0.02);
      envelope.gain.setValueAtTime(1, end - 0.02);
      envelope.gain.linearRampToValueAtTime(0, end);
      osc.connect(envelope);
      envelope.connect(gain);
      osc.addEventListener("ended", () => envelope.disconnect());
      osc.start(t0);
      osc.stop(end);
    };
    ctx.resume().then(() => {
      if (nightAlert !== mine) return; // answered or ended meanwhile
      burst();
      mine.timer = window.setInterval(burst, ALERT_EVERY_MS);
      document.body.dataset.alerting = "true";
    }).catch((err) => console.warn("desk: night-time alert", err));
  }

  function stopAlert() {
    if (!nightAlert) return;
    window.clearInterval(nightAlert.timer);
    nightAlert.gain.disconnect(); // silences a burst still playing
    nightAlert = null;
    delete document.body.dataset.alerting;
  }

  // ------------------------------------------------------------------ transfers
  const TARGETS = {
    agent: /^[A-Za-z0-9_-]{1,32}$/,
    queue: /^[a-z0-9][a-z0-9-]{0,62}$/,
    number: /^\+?[0-9*#]{2,20}$/,
  };

  function transferTarget() {
    const kind = $("transfer-kind").value;
    const target = $("transfer-target").value.trim();
    return TARGETS[kind] && TARGETS[kind].test(target) ? target : null;
  }

  function setTransfer(state, target, cause) {
    transfer = { state, target: target || "", cause: cause || "" };
    renderTransfer();
  }

  function failTransfer(target, err) {
    setTransfer("failed", target, (err && err.message) || String(err));
  }

  async function blindTransfer(event) {
    event.preventDefault();
    if (!phone || call.state !== "talking" || consult || transfer.state === "transferring") {
      return;
    }
    const target = transferTarget();
    if (!target) return setTransfer("invalid", "");
    const note = $("transfer-note").value.trim();
    const user = encodeURIComponent(target).replace(/%2B/g, "+");
    const data = note ? `?X-BL-Data=${encodeURIComponent(new URLSearchParams({ note }))}` : "";
    setTransfer("transferring", target);
    try {
      await phone.transfer(`sip:${user}@${session.domain}${data}`);
    } catch (err) {
      return failTransfer(target, err);
    }
    setTransfer("done", target);
    $("transfer-target").value = $("transfer-note").value = "";
    phoneAction((p) => p.hangup()); // the caller went on: this call leaves
  }

  function startConsult() {
    if (!phone || call.state !== "talking" || consult) return;
    const target = $("transfer-kind").value === "number" ? transferTarget() : null;
    if (!target) return setTransfer("invalid", "");
    phoneAction((p) => {
      p.consult(target);
      consult = { target, state: "calling" };
      setCall("talking", { held: true });
      setTransfer("consulting", target);
    });
  }

  async function completeTransfer() {
    if (!phone || !consult || consult.state !== "talking") return;
    const target = consult.target;
    setTransfer("transferring", target);
    try {
      await phone.completeTransfer();
    } catch (err) {
      return failTransfer(target, err);
    }
    setTransfer("done", target);
    $("transfer-target").value = $("transfer-note").value = "";
    phoneAction((p) => p.hangup());
  }

  function cancelConsult() {
    if (!phone || !consult) return;
    consult = null;
    setTransfer("", "");
    phoneAction((p) => p.cancelConsult());
  }

  // The three-way conference: the node joins the caller, the agent and the consulted
  // party and hangs up the consultation; this call is taken off hold for it.
  async function startConference() {
    if (!phone || !consult || consult.state !== "talking" || conference) return;
    const target = consult.target;
    setTransfer("conferencing", target);
    let doc;
    try {
      doc = await api("POST", "conferences", {});
    } catch (err) {
      return setTransfer("conferenceFailed", target, err.message);
    }
    consult = null;
    conference = { id: doc.id, target,
                   timer: window.setInterval(followConference, CONFERENCE_POLL_MS) };
    setTransfer("conferenced", target);
    phoneAction((p) => {
      if (p.onHold) p.unhold();
    });
    renderCall();
  }

  async function followConference() {
    const mine = conference;
    if (!mine || !session) return;
    try {
      await api("GET", `conferences/${encodeURIComponent(mine.id)}`);
    } catch (err) {
      if (conference !== mine || !(err instanceof ApiError) || err.status !== 404) return;
      endConference(); // a party left: the call goes on with the other one
      setTransfer("conferenceEnded", mine.target);
    }
  }

  function endConference() {
    if (!conference) return;
    window.clearInterval(conference.timer);
    conference = null;
    renderCall();
  }

  function renderTransferChoices() {
    const kind = $("transfer-kind").value;
    const names = !snapshot ? [] : kind === "agent"
      ? snapshot.agents.map((a) => a.id).filter((id) => !session || id !== session.agent)
      : kind === "queue" ? snapshot.queues.map((q) => q.name) : [];
    $("transfer-choices").replaceChildren(...names.map((name) => {
      const option = document.createElement("option");
      option.value = name;
      return option;
    }));
  }

  function renderTransfer() {
    const live = call.state === "talking";
    $("transfer").hidden = !live;
    const busy = transfer.state === "transferring" || transfer.state === "conferencing";
    $("transfer-blind").disabled = !live || busy || consult !== null || conference !== null;
    $("transfer-consult").disabled = !live || busy || consult !== null || conference !== null
      || $("transfer-kind").value !== "number";
    $("transfer-complete").hidden = $("transfer-cancel").hidden = consult === null;
    $("transfer-conference").hidden = consult === null;
    $("transfer-complete").disabled = $("transfer-conference").disabled =
      busy || !consult || consult.state !== "talking";
    $("transfer-cancel").disabled = busy;
    $("transfer-kind").disabled = $("transfer-target").disabled = consult !== null;
    const el = $("transfer-status");
    el.dataset.state = transfer.state;
    el.textContent = transfer.state
      ? t(`transfer.${transfer.state}`, { target: transfer.target, cause: transfer.cause })
      : "";
  }

  // ------------------------------------------------------------------ rendering
  function stateLabel(state, reason) {
    if (!state) return "";
    let text = STATES.includes(state) ? t(`state.${state}`) : state;
    if (state === "not_ready" && reason) {
      text += ` — ${OWN_REASONS.includes(reason) ? t(`reason.${reason}`) : reason}`;
    }
    return text;
  }

  function clock(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const hours = Math.floor(s / 3600);
    const mm = String(Math.floor((s % 3600) / 60));
    const ss = String(s % 60).padStart(2, "0");
    return hours ? `${hours}:${mm.padStart(2, "0")}:${ss}` : `${mm}:${ss}`;
  }

  function renderOwn() {
    const el = $("own-state");
    el.dataset.state = own.state;
    el.dataset.reason = own.reason;
    el.textContent = stateLabel(own.state, own.reason);
    renderClock();
  }

  function renderClock() {
    $("own-time").textContent = own.state ? clock((performance.now() - own.since) / 1000) : "";
    renderDay();
  }

  // The agent's own day: the daily record as fetched, plus the current state's time
  // since then (or since it began, when that is later) in its own figure.
  const DAY_COUNTS = [["own-answered", "answered"], ["own-outbound-calls", "outbound_calls"],
                      ["own-not-ready-periods", "not_ready_periods"], ["own-breaks", "breaks"]];
  const DAY_TIMES = [["own-talk", "talk_seconds"], ["own-wrap-up", "wrap_up_seconds"],
                     ["own-outbound", "outbound_seconds"],
                     ["own-not-ready", "not_ready_seconds"], ["own-break", "break_seconds"]];

  function currentDayField() {
    if (own.state === "talking" || own.state === "hold") {
      return own.outbound ? "outbound_seconds" : "talk_seconds";
    }
    return { not_ready: "not_ready_seconds", break: "break_seconds",
             wrap_up: "wrap_up_seconds" }[own.state] || "";
  }

  function renderDay() {
    const record = (ownDay && ownDay.record) || {};
    const extra = ownDay && own.state
      ? Math.max(0, performance.now() - Math.max(ownDay.at, own.since)) / 1000 : 0;
    const current = currentDayField();
    for (const [id, key] of DAY_COUNTS) $(id).textContent = String(record[key] || 0);
    for (const [id, key] of DAY_TIMES) {
      $(id).textContent = clock((record[key] || 0) + (key === current ? extra : 0));
    }
  }

  function renderReasons() {
    const codes = (snapshot && snapshot.not_ready_reasons) || [];
    const select = $("reason-select");
    const useSelect = codes.length > 0;
    select.hidden = !useSelect;
    $("reason-text").hidden = useSelect;
    document.querySelector("label[for^='reason-']").htmlFor =
      useSelect ? "reason-select" : "reason-text";
    const kept = select.value;
    select.replaceChildren(...["", ...codes].map((code) => {
      const option = document.createElement("option");
      option.value = code;
      option.textContent = code || t("reason.none");
      return option;
    }));
    if (["", ...codes].includes(kept)) select.value = kept;
  }

  function renderLive() {
    const body = $("queues").tBodies[0];
    const queues = snapshot ? snapshot.queues : [];
    body.replaceChildren(...queues.map((q) => {
      const row = document.createElement("tr");
      row.dataset.queue = q.name;
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = q.name;
      row.append(th);
      for (const [cls, value] of [["waiting", q.waiting], ["longest", clock(q.longest_wait)],
                                  ["ready", q.ready]]) {
        const td = document.createElement("td");
        td.className = `n ${cls}`;
        td.textContent = String(value);
        row.append(td);
      }
      return row;
    }));
    const team = snapshot ? snapshot.team : {};
    for (const [id, key] of [["team-logged-in", "logged_in"], ["team-ready", "ready"],
                             ["team-busy", "busy"], ["team-not-ready", "not_ready"],
                             ["team-on-break", "on_break"]]) {
      $(id).textContent = String(team[key] || 0);
    }
  }

  function renderPhone() {
    const el = $("phone-status");
    el.dataset.state = phoneState.key.replace(/^phone\./, "");
    el.textContent = t(phoneState.key, phoneState.vars);
  }

  function renderCall() {
    const el = $("call-status");
    const shown = call.state === "talking" && call.held ? "held"
      : call.state === "talking" && conference ? "conference" : call.state;
    el.dataset.state = shown;
    el.textContent = t(`call.${shown}`);
    $("pop-title").textContent = t(call.state === "ringing" ? "pop.title" : "pop.current");
    const live = call.state === "talking";
    $("answer").disabled = call.state !== "ringing";
    $("hangup").disabled = call.state === "idle";
    $("hold").disabled = !live;
    $("mute").disabled = !live;
    $("dial").disabled = !phone || call.state !== "idle";
    $("hold").setAttribute("aria-pressed", String(call.held));
    $("hold").textContent = t(call.held ? "call.resume" : "call.hold");
    $("mute").setAttribute("aria-pressed", String(call.muted));
    $("mute").textContent = t(call.muted ? "call.unmute" : "call.mute");
    renderTransfer();
  }

  function renderStream() {
    const el = $("stream-status");
    el.dataset.state = streamState;
    el.textContent = t(`stream.${streamState}`);
  }

  function renderAll() {
    $("who").textContent = session ? t("signedInAs", {
      agent: session.name || session.agent, tenant: session.tenant,
      extension: session.extension || "?" }) : "";
    for (const el of $("pop-data").querySelectorAll("dt.data")) {
      if (el.dataset.label) el.textContent = t(el.dataset.label);
    }
    renderOwn();
    renderReasons();
    renderLive();
    renderTransferChoices();
    renderPhone();
    renderCall();
    renderStream();
    emit("render");
  }

  // ------------------------------------------------------------------ panels
  // Other panels (supervisor.js) plug in here: they hear of every render, ACD event,
  // incoming and ended call, and use the desk's API client, labels and phone.
  const listeners = { render: [], event: [], incoming: [], ended: [] };

  function emit(name, ...args) {
    for (const fn of listeners[name]) {
      try {
        fn(...args);
      } catch (err) {
        console.error(`desk: ${name} listener`, err);
      }
    }
  }

  window.BranchlineDesk = {
    api, t,
    on: (name, fn) => listeners[name].push(fn),
    session: () => session,
    snapshot: () => snapshot,
    call: () => call,
    answer: () => phoneAction((p) => p.answer()),
    refresh: () => scheduleRefresh(0),
  };

  // ------------------------------------------------------------------ start
  async function start() {
    $("sign-in-form").addEventListener("submit", signIn);
    $("language").addEventListener("change", (e) => {
      setLanguage(e.target.value).catch((err) => console.error("desk: labels", err));
    });
    $("ready").addEventListener("click", () => changeState("ready"));
    $("not-ready").addEventListener("click", () => changeState("not_ready", notReadyReason()));
    $("break").addEventListener("click", () => changeState("break"));
    $("sign-out").addEventListener("click", signOut);
    $("answer").addEventListener("click", () => phoneAction((p) => p.answer()));
    $("hangup").addEventListener("click", () => phoneAction((p) => p.hangup()));
    $("hold").addEventListener("click", () => phoneAction((p) => {
      if (call.held) p.unhold(); else p.hold();
    }));
    $("mute").addEventListener("click", () => phoneAction((p) => {
      if (call.muted) p.unmute(); else p.mute();
    }));
    $("dial-form").addEventListener("submit", dial);
    $("transfer-form").addEventListener("submit", blindTransfer);
    $("transfer-consult").addEventListener("click", startConsult);
    $("transfer-complete").addEventListener("click", completeTransfer);
    $("transfer-conference").addEventListener("click", startConference);
    $("transfer-cancel").addEventListener("click", cancelConsult);
    $("transfer-kind").addEventListener("change", () => {
      renderTransferChoices();
      renderTransfer();
    });
    for (const key of $("keypad").querySelectorAll("button[data-key]")) {
      key.addEventListener("click", () => pressKey(key.dataset.key));
    }
    window.setInterval(renderClock, 1000);
    window.addEventListener("pagehide", () => stopPhone());
    try {
      const resp = await fetch("config.json", { cache: "no-store" });
      if (resp.ok) config = await resp.json();
    } catch (err) {
      console.warn("desk: config", err);
    }
    try {
      await setLanguage(preferredLanguage());
    } catch (err) {
      console.error("desk: labels", err);
      renderAll();
    }
    document.body.dataset.ready = "true";
    $("domain").focus();
  }

  start();
})();
