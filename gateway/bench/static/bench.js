// The bench page: renders the gateway's document (GET api/state, then server-sent
// events on api/stream). Plain DOM, text only (never innerHTML with data), no library.
"use strict";

const STATES = {
  alarm: "报警 alarm", tamper: "防拆 tamper", line_fault: "线路故障 line fault",
  offline: "离线 offline", walk_tested: "已步测 walk-tested", walk_test: "待步测 walk test",
  bypassed: "旁路 bypassed", open: "未就绪 open", normal: "正常 normal", unknown: "未知 unknown",
  on: "鸣响 on",
};
const TYPES = {
  panic: "紧急按钮", intrusion: "入侵", perimeter: "周界", tamper: "防拆", technical: "技术",
  module: "I/O 模块", camera: "摄像机", reader: "巡更读卡器", panel: "报警主机", siren: "警号", strobe: "爆闪灯",
  relay: "继电器",
};
const HEALTH = { online: "在线 online", offline: "离线 offline", starting: "启动中 starting",
  degraded: "降级 degraded" };
const STOPS = { done: "已到 done", due: "待到 due", missed: "漏巡 missed" };

const $ = (selector) => document.querySelector(selector);
let session = { password: false, logged_in: false };
let latest = null;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key.startsWith("data-")) node.setAttribute(key, String(value));
    else node[key] = value;
  }
  for (const child of children) {
    if (child !== null && child !== undefined) {
      node.append(child instanceof Node ? child : String(child));
    }
  }
  return node;
}

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

// -- rendering -------------------------------------------------------------------------

function render(doc) {
  latest = doc;
  $("#site-name").textContent = doc.site.name || doc.site.id;
  $("#site-id").textContent = `${doc.site.id}/${doc.site.gateway}`;
  $("#tz").textContent = `${doc.site.timezone} ${doc.site.utc_offset}`;
  renderAction(doc.action);
  renderZones(doc.zone_groups, doc.areas);
  renderUplink(doc.uplink);
  renderDevices(doc.devices);
  renderPatrol(doc.patrol);
  renderEvents(doc.events);
  renderCameras(doc.cameras);
  renderWalk(doc.walk_test, doc.areas);
}

function renderAction(items) {
  const list = $("#action");
  list.replaceChildren(...items.map((item) => el("li",
    { "data-priority": item.priority, "data-kind": item.kind, "data-id": item.id },
    el("b", {}, `${item.id} ${item.name}`), " · ", STATES[item.state] || item.state,
    item.latched ? " · 已锁存 latched, needs reset" : "",
    item.acknowledged ? " · 中心已确认 acknowledged" : "",
    item.since ? ` · 自 since ${item.since}` : "",
    item.reason ? ` · ${item.reason}` : "",
    item.until ? ` · 至 until ${item.until}` : "")));
  $("#action-none").hidden = items.length > 0;
}

function renderZones(groups, areas) {
  const byId = Object.fromEntries(areas.map((a) => [a.area, a]));
  $("#zones").replaceChildren(...groups.map((group) => {
    const area = byId[group.area];
    const header = el("h3", {}, group.name || group.area,
      area ? el("span", { className: "armed", "data-armed": area.armed },
        area.armed ? "布防 armed" : "撤防 disarmed") : el("span", { className: "quiet" }, "24 小时防区"));
    return el("div", { className: "area", "data-area": group.area || "" }, header,
      el("div", { className: "grid" }, ...group.zones.map((zone) => el("div", {
        className: "zone", "data-zone": zone.id, "data-state": zone.state,
        "data-latched": zone.latched, "data-violated": zone.violated, title: `${zone.location} · since ${zone.since}`,
      },
      el("span", { className: "state" }, STATES[zone.state] || zone.state),
      el("span", { className: "id" }, zone.id),
      el("span", { className: "name" }, zone.name),
      el("span", { className: "meta" }, TYPES[zone.type] || zone.type,
        zone.latched ? " · 已锁存 latched" : "", zone.bypassed ? " · 旁路" : "")))));
  }));
}

function renderUplink(uplink) {
  $("#uplink").dataset.connected = uplink.connected;
  $("#uplink-badge").dataset.connected = uplink.connected;
  $("#uplink-badge").textContent = uplink.connected ? "上行已连接 uplink up" : "上行断开 uplink DOWN";
  $("#uplink-state").textContent = `${uplink.connected ? "已连接 connected" : "断开 down"} · ${uplink.broker}`;
  $("#backlog").textContent = uplink.backlog;
  $("#unacked").textContent = uplink.unacked_alarms;
  $("#last-ack").textContent = uplink.last_center_ack || "—";
}

function renderDevices(devices) {
  $("#devices tbody").replaceChildren(...devices.map((d) => el("tr",
    { "data-device": d.id, "data-health": d.health },
    el("td", {}, `${d.name} (${TYPES[d.type] || d.type})`),
    el("td", {}, HEALTH[d.health] || d.health),
    el("td", {}, d.last_seen || "—"))));
}

function renderPatrol(rounds) {
  $("#patrol").replaceChildren(...(rounds.length ? rounds.map((r) => el("div", {},
    el("div", {}, `${r.route_name} · ${r.scheduled}`),
    ...r.stops.map((s) => el("span", { className: "stop", "data-status": s.status,
      title: s.at || `deadline ${s.deadline}` }, `${s.name} ${STOPS[s.status]}`)))) :
    [el("p", { className: "quiet" }, "当前无巡更轮次 · no round open")]));
}

function renderEvents(events) {
  $("#events").replaceChildren(...events.map((e) => el("li",
    { "data-priority": e.priority, "data-type": e.type, "data-test": e.test },
    el("span", { className: "t" }, e.time),
    el("span", { className: "p" }, `P${e.priority}`),
    el("span", {}, e.type),
    el("span", {}, `${e.subject} ${e.name}`, e.state && e.state !== "instant" ? ` · ${e.state}` : "",
      e.detail ? ` · ${e.detail}` : ""))));
}

function renderCameras(cameras) {
  $("#cameras").replaceChildren(...cameras.map((c) => el("figure", { "data-camera": c.id },
    c.picture ? el("img", { src: c.picture, alt: c.name }) : el("p", { className: "quiet" }, "尚无图片 no picture yet"),
    el("figcaption", {}, c.name, c.taken ? ` · ${c.taken}` : ""))));
}

function renderWalk(walk, areas) {
  const box = $("#walk");
  const active = walk.active;
  const parts = [];
  if (active) {
    parts.push(el("p", {}, `进行中 running · ${active.by} · 至 until ${active.until_local}`),
      el("p", {}, "未触发 untripped: ", ...active.untripped.map((z) => el("span", { className: "chip", "data-untripped": z }, z))),
      el("p", {}, "已触发 tripped: ", ...Object.entries(active.tripped).map(([z, t]) => el("span", { className: "chip" }, `${z}×${t.count}`))));
    if (session.logged_in) {
      const stop = el("button", { type: "button" }, "结束步测 stop");
      stop.addEventListener("click", () => api("api/walk-test/stop", { technician: $("#walk-tech").value })
        .catch((err) => { $("#walk-error").textContent = err.message; }));
      parts.push(stop);
    }
  } else {
    parts.push(el("p", { className: "quiet" }, "无步测进行中 · no walk test running"));
  }
  const report = walk.last_report;
  if (report) {
    parts.push(el("p", { id: "walk-report" }, `上次报告 last report (${report.reason}, ${report.started_local} – ${report.ended_local}): `,
      "未触发 never tripped: ", report.untripped.length ? report.untripped.join(", ") : "无 none"));
  }
  box.replaceChildren(...parts);
  const form = $("#walk-form");
  form.hidden = !session.logged_in || Boolean(active);
  $("#walk-locked").hidden = session.logged_in || Boolean(active);
  const select = $("#walk-area");
  if (select.options.length !== areas.length + 1) {
    select.replaceChildren(el("option", { value: "" }, "—"),
      ...areas.map((a) => el("option", { value: a.area }, `${a.area} ${a.name}`)));
  }
}

// -- clock, stream, session ---------------------------------------------------------------

function tick() {
  // the site's wall clock, written like the event times: YYYY-MM-DD HH:MM:SS; none
  // until the gateway has said the site's zone (before that it would be UTC)
  if (!latest) {
    $("#clock").textContent = "站点时间 —";
    return;
  }
  const parts = Object.fromEntries(new Intl.DateTimeFormat("en-CA", {
    timeZone: latest.site.timezone, year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
  }).formatToParts(new Date()).map((p) => [p.type, p.value]));
  const text = `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}:${parts.second}`;
  $("#clock").textContent = `站点时间 ${text} ${latest.site.utc_offset}`;
}

function connect() {
  $("#page").hidden = false;
  $("#login").hidden = true;
  const stream = new EventSource("api/stream");
  stream.addEventListener("open", () => {
    $("#stream").dataset.live = "true";
    $("#stream").textContent = "实时 live";
  });
  stream.addEventListener("state", (message) => render(JSON.parse(message.data)));
  stream.addEventListener("error", () => {
    $("#stream").dataset.live = "false";
    $("#stream").textContent = "与网关断开 gateway unreachable";
  });
}

function showSession() {
  const box = $("#session");
  if (!session.password) {
    box.replaceChildren(el("span", { className: "quiet" }, "只读 read-only"));
    return;
  }
  if (!session.logged_in) {  // the login form is showing: nothing to log out of
    box.replaceChildren();
    return;
  }
  const out = el("button", { type: "button" }, "退出 log out");
  out.addEventListener("click", async () => { await api("api/logout", {}); location.reload(); });
  box.replaceChildren(out);
}

async function main() {
  setInterval(tick, 1000);
  session = await api("api/session");
  showSession();
  $("#login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api("api/login", { password: $("#password").value });
      session = await api("api/session");
      showSession();
      connect();
    } catch (err) {
      $("#login-error").textContent = err.message;
    }
  });
  $("#walk-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const zones = $("#walk-zones").value.split(/[,\s]+/).filter(Boolean);
    try {
      await api("api/walk-test", {
        technician: $("#walk-tech").value, area: $("#walk-area").value || null, zones,
        duration_s: Number($("#walk-minutes").value) * 60,
      });
      $("#walk-error").textContent = "";
    } catch (err) {
      $("#walk-error").textContent = err.message;
    }
  });
  if (session.password && !session.logged_in) {
    $("#login").hidden = false;
    // not connecting yet, and no uplink figure to show: neither is an alarm colour
    $("#stream").textContent = "未登录 not logged in";
    delete $("#stream").dataset.live;
    delete $("#uplink-badge").dataset.connected;
  } else {
    connect();
  }
}

main();
