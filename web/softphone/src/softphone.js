// Branchline softphone: a browser phone for one tenant extension.
//
// JsSIP (SIP over WebSocket) registers with the node's edge (Kamailio) exactly as a
// desk phone does: the extension number and its password, the tenant's SIP domain as
// the realm. Media is WebRTC (ICE + DTLS-SRTP); the node's rtpengine turns it into
// the plain RTP the feature server speaks (docs/WEBRTC.md).
//
// One call at a time, plus a consultation call while it is on hold (attended transfer).
// Built by esbuild into one IIFE, dist/softphone.js, that defines
// a global `Softphone`:
//
//   const phone = Softphone({wsUrl: "wss://node.example:8443", uri: "sip:1001@acme.example",
//                            password: "...", displayName: "Alice"});
//
// More options: iceServers (STUN/TURN for RTCPeerConnection, none by default),
// audio (getUserMedia audio constraints, e.g. {echoCancellation: false}),
// remoteAudio (the <audio> element that plays the far end; one is made otherwise),
// authorizationUser, registerExpires (seconds, 300), register (at start), debug.
//   phone.on("incoming", (call) => phone.answer());
//   phone.on("confirmed", () => ...);
//   phone.register();
//   phone.call("1002");   // a number of the tenant, or a full sip: URI
//   phone.hold(); phone.unhold(); phone.mute(); phone.unmute(); phone.sendDTMF("12#");
//   phone.hangup(); phone.unregister(); phone.stop();
//   await phone.transfer("sip:bob@acme.example");  // blind transfer (REFER); resolves on
//                                  // the far end's NOTIFY 2xx, rejects with the failure
//   phone.consult("1002");         // hold the call, call the second party
//   await phone.completeTransfer(); // attended transfer: REFER with Replaces
//   phone.cancelConsult();         // hang up the consultation, resume the call
//
// Events (callbacks registered with on(name, fn); a callback's exception is logged,
// never thrown into JsSIP): connected, disconnected, registered, unregistered,
// registrationFailed {cause}, incoming {from, displayName}, progress, accepted,
// confirmed, ended {cause, originator}, failed {cause, originator}, hold {originator},
// unhold {originator}, muted, unmuted, dtmf {tone, originator}, remoteStream (MediaStream);
// for the consultation call: consultProgress, consultConfirmed, consultEnded {cause,
// originator}, and consultPromoted (the first call ended: the consultation is the call).

import JsSIP from "jssip";

const EVENTS = new Set([
  "connected", "disconnected", "registered", "unregistered", "registrationFailed",
  "incoming", "progress", "accepted", "confirmed", "ended", "failed", "hold", "unhold",
  "muted", "unmuted", "dtmf", "remoteStream",
  "consultProgress", "consultConfirmed", "consultEnded", "consultPromoted",
]);

function Softphone(options) {
  const opts = Object.assign({ iceServers: [], register: false, debug: false }, options);
  for (const key of ["wsUrl", "uri", "password"]) {
    if (!opts[key]) throw new Error(`Softphone: option ${key} is required`);
  }
  if (opts.debug) JsSIP.debug.enable("JsSIP:*");
  else JsSIP.debug.disable();

  const target = JsSIP.URI.parse(opts.uri);
  if (!target) throw new Error(`Softphone: bad uri ${opts.uri}`);
  const domain = target.host;
  const handlers = new Map();
  let session = null;
  let consultSession = null; // the second call of an attended transfer
  let placingConsult = false;
  let joining = false; // an attended transfer is under way: the first call just ends
  const streams = new Map(); // session -> its remote MediaStream
  let remoteStream = null;
  const remoteAudio = opts.remoteAudio || new Audio();
  remoteAudio.autoplay = true;

  function emit(name, detail) {
    for (const fn of handlers.get(name) || []) {
      try {
        fn(detail);
      } catch (err) {
        console.error(`Softphone: ${name} handler failed`, err);
      }
    }
  }

  const ua = new JsSIP.UA({
    sockets: [new JsSIP.WebSocketInterface(opts.wsUrl)],
    uri: opts.uri,
    password: opts.password,
    display_name: opts.displayName || undefined,
    authorization_user: opts.authorizationUser || undefined,
    register: opts.register,
    register_expires: opts.registerExpires || 300,
    // The node answers UPDATE only inside its own dialogs; session-timer refreshes
    // towards some phones fail (501), so calls are kept alive by RTP/RTCP instead.
    session_timers: false,
    user_agent: "Branchline softphone (JsSIP " + JsSIP.version + ")",
  });

  ua.on("connected", () => emit("connected"));
  ua.on("disconnected", () => emit("disconnected"));
  ua.on("registered", () => emit("registered"));
  ua.on("unregistered", () => emit("unregistered"));
  ua.on("registrationFailed", (e) => emit("registrationFailed", { cause: e.cause }));
  ua.on("newRTCSession", (e) => {
    if (e.originator === "remote") {
      if (session || consultSession) {
        e.session.terminate({ status_code: 486, reason_phrase: "Busy Here" });
        return;
      }
      adopt(e.session);
      emit("incoming", {
        from: e.request.from.uri.toString(),
        displayName: e.request.from.display_name || "",
      });
    } else if (placingConsult) {
      adoptConsult(e.session);
    } else {
      adopt(e.session);
    }
  });

  // The far end heard is the consultation's while there is one, else the call's.
  function play() {
    const active = consultSession || session;
    const stream = (active && streams.get(active)) || null;
    if (stream === remoteStream) return;
    remoteStream = stream;
    remoteAudio.srcObject = stream;
    if (!stream) return;
    const playing = remoteAudio.play();
    if (playing) playing.catch((err) => console.warn("Softphone: autoplay refused", err));
    emit("remoteStream", stream);
  }

  function attachRemote(s, pc) {
    pc.addEventListener("track", (ev) => {
      streams.set(s, ev.streams[0] || new MediaStream([ev.track]));
      play();
    });
  }

  function watchMedia(s) {
    if (s.connection) attachRemote(s, s.connection);
    else s.on("peerconnection", (e) => attachRemote(s, e.peerconnection));
  }

  function adoptConsult(s) {
    consultSession = s;
    watchMedia(s);
    s.on("progress", () => emit("consultProgress"));
    s.on("confirmed", () => emit("consultConfirmed"));
    const done = (e) => {
      streams.delete(s);
      if (consultSession === s) consultSession = null;
      play();
      emit("consultEnded", { cause: e.cause, originator: e.originator });
    };
    s.on("ended", done);
    s.on("failed", done);
  }

  function adopt(s) {
    session = s;
    joining = false;
    watchMedia(s);
    s.on("progress", () => emit("progress"));
    s.on("accepted", () => emit("accepted"));
    s.on("confirmed", () => emit("confirmed"));
    s.on("hold", (e) => emit("hold", { originator: e.originator }));
    s.on("unhold", (e) => emit("unhold", { originator: e.originator }));
    s.on("muted", () => emit("muted"));
    s.on("unmuted", () => emit("unmuted"));
    s.on("newDTMF", (e) => emit("dtmf", { tone: e.dtmf.tone, originator: e.originator }));
    const done = (name) => (e) => {
      streams.delete(s);
      if (session === s && consultSession && !joining) {
        // the first call ended during a consultation: the consultation is the call now
        session = consultSession;
        consultSession = null;
        play();
        emit("consultPromoted", { cause: e.cause, originator: e.originator });
        return;
      }
      if (session === s) {
        session = null;
        play();
      }
      emit(name, { cause: e.cause, originator: e.originator });
    };
    s.on("ended", done("ended"));
    s.on("failed", done("failed"));
  }

  function current() {
    if (!session) throw new Error("Softphone: no call");
    return session;
  }

  function toUri(number) {
    return number.startsWith("sip:") ? number : `sip:${number}@${domain}`;
  }

  // REFER on `s`; resolves on the NOTIFY 2xx, rejects with the status or cause.
  function refer(s, to, options) {
    return new Promise((resolve, reject) => {
      const fail = (e) => {
        const line = e && e.status_line;
        const response = e && e.response;
        reject(new Error(line ? `${line.status_code} ${line.reason_phrase}`
          : response ? `${response.status_code} ${response.reason_phrase}`
            : (e && e.cause) || "failed"));
      };
      const sent = s.refer(to, Object.assign({}, options, {
        eventHandlers: { accepted: () => resolve(), failed: fail, requestFailed: fail },
      }));
      if (!sent) reject(new Error("the call is not established"));
    });
  }

  const callOptions = () => ({
    mediaConstraints: { audio: opts.audio || true, video: false },
    pcConfig: { iceServers: opts.iceServers, rtcpMuxPolicy: "require" },
  });

  ua.start();

  return {
    ua,
    get inCall() {
      return session !== null;
    },
    get registered() {
      return ua.isRegistered();
    },
    get remoteStream() {
      return remoteStream;
    },
    on(name, fn) {
      if (!EVENTS.has(name)) throw new Error(`Softphone: unknown event ${name}`);
      if (!handlers.has(name)) handlers.set(name, []);
      handlers.get(name).push(fn);
      return this;
    },
    register() {
      // before the WebSocket is up JsSIP would fail the REGISTER (Connection Error)
      if (ua.isConnected()) ua.register();
      else ua.once("connected", () => ua.register());
    },
    unregister() {
      ua.unregister({ all: false });
    },
    call(number) {
      if (session) throw new Error("Softphone: already in a call");
      ua.call(toUri(number), callOptions());
    },
    get consulting() {
      return consultSession !== null;
    },
    transfer(to) {
      return refer(current(), toUri(to));
    },
    consult(number) {
      const main = current();
      if (consultSession) throw new Error("Softphone: already consulting");
      if (!main.isOnHold().local) main.hold();
      placingConsult = true;
      try {
        ua.call(toUri(number), callOptions());
      } finally {
        placingConsult = false;
      }
    },
    completeTransfer() {
      const main = current();
      const other = consultSession;
      if (!other || !other.isEstablished()) {
        return Promise.reject(new Error("Softphone: no consultation to join"));
      }
      joining = true;
      return refer(main, other.remote_identity.uri.toString(), { replaces: other })
        .catch((err) => {
          joining = false;
          throw err;
        });
    },
    cancelConsult() {
      const main = current();
      if (consultSession) consultSession.terminate();
      if (main.isOnHold().local) main.unhold();
    },
    answer() {
      current().answer(callOptions());
    },
    hangup() {
      if (session) session.terminate();
    },
    hold() {
      return current().hold();
    },
    unhold() {
      return current().unhold();
    },
    get onHold() {
      return session ? session.isOnHold().local : false;
    },
    mute() {
      current().mute({ audio: true });
    },
    unmute() {
      current().unmute({ audio: true });
    },
    sendDTMF(tones) {
      current().sendDTMF(tones);
    },
    // What the browser saw on the current call: the negotiated codec and RTP counts.
    async stats() {
      const pc = current().connection;
      const out = { codec: null, packetsReceived: 0, packetsLost: 0, packetsSent: 0 };
      const report = await pc.getStats();
      report.forEach((r) => {
        if (r.type === "inbound-rtp" && r.kind === "audio") {
          out.packetsReceived += r.packetsReceived || 0;
          out.packetsLost += r.packetsLost || 0;
          const codec = r.codecId && report.get(r.codecId);
          if (codec) out.codec = codec.mimeType.replace(/^audio\//, "");
        } else if (r.type === "outbound-rtp" && r.kind === "audio") {
          out.packetsSent += r.packetsSent || 0;
        }
      });
      return out;
    },
    stop() {
      if (consultSession) consultSession.terminate();
      if (session) session.terminate();
      ua.stop();
    },
  };
}

globalThis.Softphone = Softphone;
