// Branchline agent desktop: wrap-up codes and notes (R-5.2a after-call work). When an
// answered queue call ends, the phone panel asks for one of the tenant's wrap-up codes
// (the snapshot's wrap_up_codes) and a note, and files them for the call
// (PUT /api/v1/agents/<me>/wrap-up {contact, code, note}); the call's id is the
// contact=<id> of the offer's X-BL-Data. The form does not depend on the agent's state:
// it works in after-call work (wrap_up, until "Ready" or the queue's timer) and once
// ready again. Saving again for the same call, until the next one ends, replaces it.
// Plugs into desk.js through window.BranchlineDesk; no inline script (CSP).
(function () {
  const desk = window.BranchlineDesk;
  if (!desk) return;
  const $ = (id) => document.getElementById(id);
  let ringing = null; // the contact id of the call ringing or talking now
  let answered = false; // that call was answered here
  let contact = null; // the contact the form is for
  let status = { state: "", cause: "" };

  function codes() {
    const snapshot = desk.snapshot();
    return (snapshot && snapshot.wrap_up_codes) || [];
  }

  function render() {
    if (!desk.session()) {
      ringing = contact = null;
      status = { state: "", cause: "" };
    }
    if (ringing && desk.call().state === "talking") answered = true;
    const box = $("wrapup");
    box.hidden = !(contact && codes().length);
    $("wrapup-form").dataset.contact = contact || "";
    const select = $("wrapup-code");
    const wanted = ["", ...codes()];
    if ([...select.options].map((o) => o.value).join() !== wanted.join()
        || (select.options[0] && select.options[0].textContent !== desk.t("wrapup.choose"))) {
      const kept = select.value;
      select.replaceChildren(...wanted.map((code) => {
        const option = document.createElement("option");
        option.value = code;
        option.textContent = code || desk.t("wrapup.choose");
        return option;
      }));
      if (wanted.includes(kept)) select.value = kept;
    }
    $("wrapup-save").disabled = status.state === "saving";
    const el = $("wrapup-status");
    el.dataset.state = status.state;
    el.textContent = status.state === "saved" ? desk.t("wrapup.saved")
      : status.state === "saving" ? desk.t("wrapup.saving")
      : status.state === "invalid" ? desk.t("wrapup.invalid")
      : status.state === "failed" ? desk.t("wrapup.failed", { cause: status.cause }) : "";
  }

  function setStatus(state, cause) {
    status = { state, cause: cause || "" };
    render();
  }

  async function save(event) {
    event.preventDefault();
    const session = desk.session();
    if (!session || !contact || status.state === "saving") return;
    const code = $("wrapup-code").value;
    if (!code) return setStatus("invalid");
    const filed = contact;
    setStatus("saving");
    try {
      await desk.api("PUT", `agents/${encodeURIComponent(session.agent)}/wrap-up`,
                     { contact: filed, code, note: $("wrapup-note").value });
    } catch (err) {
      return setStatus("failed", err.message);
    }
    if (contact === filed) {
      contact = null;
      $("wrapup-note").value = "";
      $("wrapup-code").value = "";
    }
    setStatus("saved");
  }

  desk.on("incoming", (data) => {
    ringing = data.get("contact"); // an ACD offer: the call's id (none for other calls)
    answered = false;
  });
  desk.on("ended", () => {
    if (ringing && answered && desk.session()) {
      contact = ringing;
      $("wrapup-note").value = "";
      $("wrapup-code").value = "";
      status = { state: "", cause: "" };
    }
    ringing = null;
    answered = false;
    render();
  });
  desk.on("render", render);
  $("wrapup-form").addEventListener("submit", save);
})();
