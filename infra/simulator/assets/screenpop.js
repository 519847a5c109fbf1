// Screen-pop panel of the simulated agent desktops: shows what the AI agent
// handed over, read from the relay's handoff API through the simulator (which
// holds the tenant's API key, as a platform would). Follows the page's
// selected conversation (`#c=<id>` in the URL) and refreshes every few seconds.
(function () {
  var panel = document.getElementById("screenpop");
  if (!panel) return;
  var provider = panel.getAttribute("data-provider");
  var shown = null, fetchedAt = 0;

  function row(label, value, testid) {
    var dt = document.createElement("dt"); dt.textContent = label;
    var dd = document.createElement("dd"); dd.textContent = value == null ? "—" : String(value);
    if (testid) dd.setAttribute("data-testid", testid);
    return [dt, dd];
  }

  function render(v) {
    var dl = document.createElement("dl");
    var c = v.customer || {};
    var rows = [
      row("Customer id", c.customer_id, "screenpop-customer-id"),
      row("Verified", c.verified === true ? "yes" : c.verified === false ? "no" : null, "screenpop-verified"),
      row("Reason", v.reason, "screenpop-reason"),
      row("Routing", v.routing ? JSON.stringify(v.routing) : null, "screenpop-routing"),
      row("State", v.state, "screenpop-state"),
      row("Handed over", v.timestamps && v.timestamps.created_at, "screenpop-created"),
      row("Agent joined", v.timestamps && v.timestamps.agent_joined_at, "screenpop-joined"),
      row("Transcript", (v.transcript || []).length + " turn(s)", "screenpop-transcript"),
    ];
    rows.forEach(function (r) { dl.appendChild(r[0]); dl.appendChild(r[1]); });
    panel.replaceChildren(dl);
    panel.setAttribute("data-session", v.session_id || "");
  }

  function selected() {
    var m = /[#&]c=([^&]+)/.exec(location.hash);
    return m ? decodeURIComponent(m[1]) : null;
  }

  function tick() {
    var id = selected();
    if (!id) return;
    if (id === shown && Date.now() - fetchedAt < 5000) return;
    fetchedAt = Date.now();
    fetch("/sim/screenpop/" + provider + "/" + encodeURIComponent(id)).then(function (r) {
      return r.json().then(function (body) { return { ok: r.ok, body: body }; });
    }).then(function (res) {
      if (selected() !== id) return;
      shown = id;
      if (res.ok) render(res.body);
      else { panel.textContent = (res.body && res.body.error) || "no screen-pop"; fetchedAt = 0; }
    }).catch(function (e) { panel.textContent = "screen-pop unavailable: " + e.message; fetchedAt = 0; });
  }
  setInterval(tick, 1000);
  tick();
})();
