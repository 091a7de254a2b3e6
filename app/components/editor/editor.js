// medseg slice view: one displayed slice with zoom, pan, crosshair, brush strokes, boxes and
// clicks. Plain JavaScript speaking Streamlit's component protocol (postMessage) directly:
// no build step. Contract (see app/editor.py):
//   args: src (PNG data URL, one image pixel per slice pixel), rows, cols, row_mm, col_mm,
//         mode ("stroke" | "erase" | "box" | "point" | "cursor"), radius_mm, cursor [row, col]
//         or null, plane, index, title, min_aspect, max_height, color [r, g, b]
//   value: {kind, points: [[row, col], ...] in slice pixel units (pixel centres at integers),
//           plane, index, seq}
// Zoom (wheel, +/-/Fit) and pan (right or middle drag, or Shift + drag) stay in the browser:
// they survive reruns (same iframe) and cost no server round trip.
"use strict";

const MAX_ZOOM = 16;
const wrap = document.getElementById("wrap");
const img = document.getElementById("img");
const ov = document.getElementById("ov");
const ctx = ov.getContext("2d");
let A = null;            // the last render's args
let W = 0, H = 0;        // display size of the whole slice at zoom 1 (CSS px)
let z = 1, tx = 0, ty = 0;
let gesture = null;      // {kind, points, start} while the pointer is down
let seq = Date.now();
let preview = null;      // the last gesture drawn until the next image arrives
let frames = 0;          // pictures shown so far (wrap's data-frames: tests and benches)

function send(type, data) {
  window.parent.postMessage(Object.assign({isStreamlitMessage: true, type: type}, data), "*");
}

function layout() {
  if (!A) return;
  const avail = Math.max(document.body.clientWidth, 50);
  const wMm = A.cols * A.col_mm, hMm = A.rows * A.row_mm;
  let w = avail, h = avail * hMm / wMm;
  const minH = avail * A.min_aspect;
  let stretch = 1;
  if (h < minH) { stretch = minH / h; h = minH; }
  if (h > A.max_height) { w = w * A.max_height / h; h = A.max_height; }
  W = Math.round(w); H = Math.round(h);
  wrap.style.width = W + "px"; wrap.style.height = H + "px";
  img.style.width = W + "px"; img.style.height = H + "px";
  ov.width = W; ov.height = H;
  const badge = document.getElementById("aspect");
  badge.textContent = stretch > 1.05 ? `stretched ${stretch.toFixed(1)}x vertically` : "";
  badge.title = stretch > 1.05 ? `Not the true aspect: ${A.rows} pixels of ${A.row_mm.toFixed(2)}`
    + ` mm vertically, ${A.cols} of ${A.col_mm.toFixed(2)} mm across; shown`
    + ` ${stretch.toFixed(1)} times taller so it can be read and edited.` : "";
  wrap.dataset.stretch = stretch.toFixed(3);
  clamp();
  send("streamlit:setFrameHeight", {height: H + 28});
}

function clamp() {
  z = Math.min(Math.max(z, 1), MAX_ZOOM);
  tx = Math.min(0, Math.max(W - W * z, tx));
  ty = Math.min(0, Math.max(H - H * z, ty));
  img.style.transform = `translate(${tx}px, ${ty}px) scale(${z})`;
  wrap.dataset.zoom = z.toFixed(3);
  document.getElementById("zoomtxt").textContent = z > 1.001 ? `zoom ${z.toFixed(1)}x` : "";
  draw();
}

function zoomAt(factor, vx, vy) {
  const nz = Math.min(Math.max(z * factor, 1), MAX_ZOOM);
  tx = vx - (vx - tx) * nz / z;
  ty = vy - (vy - ty) * nz / z;
  z = nz;
  clamp();
}

// view CSS px <-> slice pixel units (row, col), pixel centres at integers
function toSlice(vx, vy) {
  return [((vy - ty) / z) / H * A.rows - 0.5, ((vx - tx) / z) / W * A.cols - 0.5];
}
function toView(r, c) {
  return [((c + 0.5) / A.cols * W) * z + tx, ((r + 0.5) / A.rows * H) * z + ty];
}

function draw() {
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, W, H);
  if (!A) return;
  if (A.cursor) {
    const [x, y] = toView(A.cursor[0], A.cursor[1]);
    ctx.strokeStyle = "rgba(0, 200, 255, 0.75)";
    ctx.lineWidth = 1;
    ctx.setLineDash([4, 3]);
    ctx.beginPath();
    ctx.moveTo(Math.round(x) + 0.5, 0); ctx.lineTo(Math.round(x) + 0.5, H);
    ctx.moveTo(0, Math.round(y) + 0.5); ctx.lineTo(W, Math.round(y) + 0.5);
    ctx.stroke();
    ctx.setLineDash([]);
  }
  const g = gesture || preview;
  if (!g || !g.points.length) return;
  if (g.kind === "stroke" || g.kind === "erase") {
    // draw in mm so the band is as wide as the server's (round in mm)
    const kx = z * W / (A.cols * A.col_mm), ky = z * H / (A.rows * A.row_mm);
    ctx.setTransform(kx, 0, 0, ky, tx, ty);
    const c = A.color || [255, 255, 255];
    ctx.strokeStyle = g.kind === "erase" ? "rgba(0, 0, 0, 0.55)"
      : `rgba(${c[0]}, ${c[1]}, ${c[2]}, 0.55)`;
    ctx.lineWidth = 2 * A.radius_mm;
    ctx.lineCap = "round"; ctx.lineJoin = "round";
    ctx.beginPath();
    g.points.forEach(([r, cc], i) => {
      const x = (cc + 0.5) * A.col_mm, y = (r + 0.5) * A.row_mm;
      if (i === 0) { ctx.moveTo(x, y); ctx.lineTo(x + 1e-3, y); } else { ctx.lineTo(x, y); }
    });
    ctx.stroke();
  } else if (g.kind === "box" && g.points.length === 2) {
    const [x0, y0] = toView(...g.points[0]);
    const [x1, y1] = toView(...g.points[1]);
    ctx.strokeStyle = "rgba(0, 255, 0, 0.9)";
    ctx.lineWidth = 2;
    ctx.strokeRect(Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0), Math.abs(y1 - y0));
  }
}

function local(e) {
  const r = wrap.getBoundingClientRect();
  return [e.clientX - r.left, e.clientY - r.top];
}

wrap.addEventListener("contextmenu", (e) => e.preventDefault());
wrap.addEventListener("wheel", (e) => {
  e.preventDefault();
  const [vx, vy] = local(e);
  zoomAt(e.deltaY < 0 ? 1.25 : 0.8, vx, vy);
}, {passive: false});

wrap.addEventListener("pointerdown", (e) => {
  if (!A) return;
  wrap.setPointerCapture(e.pointerId);
  const [vx, vy] = local(e);
  if (e.button === 1 || e.button === 2 || e.shiftKey) {
    gesture = {kind: "pan", points: [], start: [vx, vy, tx, ty]};
    return;
  }
  if (e.button !== 0) return;
  preview = null;
  gesture = {kind: A.mode, points: [toSlice(vx, vy)], start: [vx, vy]};
  draw();
});

wrap.addEventListener("pointermove", (e) => {
  if (!gesture) return;
  const [vx, vy] = local(e);
  if (gesture.kind === "pan") {
    const [sx, sy, stx, sty] = gesture.start;
    tx = stx + vx - sx; ty = sty + vy - sy;
    clamp();
    return;
  }
  // every pointer event of the drag (coalesced ones too) becomes a stroke point
  const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
  if (gesture.kind === "stroke" || gesture.kind === "erase") {
    for (const ev of events.length ? events : [e]) gesture.points.push(toSlice(...local(ev)));
  } else if (gesture.kind === "box") {
    gesture.points = [gesture.points[0], toSlice(vx, vy)];
  }
  draw();
});

function finish(e) {
  if (!gesture) return;
  const g = gesture;
  gesture = null;
  if (g.kind === "pan") return;
  const [vx, vy] = local(e);
  const moved = Math.hypot(vx - g.start[0], vy - g.start[1]) > 3;
  let kind = g.kind, points = g.points;
  if (kind === "box") {
    if (!moved) { draw(); return; }           // a box needs a drag
    points = [g.points[0], toSlice(vx, vy)];
  } else if (kind === "point" || kind === "cursor") {
    points = [g.points[0]];
  }
  preview = {kind: kind, points: points};
  draw();
  seq += 1;
  send("streamlit:setComponentValue", {value: {
    kind: kind, points: points.map(([r, c]) => [+r.toFixed(2), +c.toFixed(2)]),
    plane: A.plane, index: A.index, seq: seq}, dataType: "json"});
}
wrap.addEventListener("pointerup", finish);
wrap.addEventListener("pointercancel", () => { gesture = null; draw(); });

document.getElementById("zin").onclick = () => zoomAt(1.5, W / 2, H / 2);
document.getElementById("zout").onclick = () => zoomAt(1 / 1.5, W / 2, H / 2);
document.getElementById("zfit").onclick = () => { z = 1; tx = 0; ty = 0; clamp(); };
window.addEventListener("resize", layout);

window.addEventListener("message", (event) => {
  if (!event.data || event.data.type !== "streamlit:render") return;
  const args = event.data.args;
  const same = A && A.rows === args.rows && A.cols === args.cols && A.plane === args.plane;
  A = args;
  document.getElementById("title").textContent = A.title || "";
  if (!same) { z = 1; tx = 0; ty = 0; }
  if (img.getAttribute("src") !== A.src) {
    img.onload = () => { preview = null; draw(); wrap.dataset.frames = String(++frames); };
    img.setAttribute("src", A.src);
  } else {
    preview = null;  // the server answered without a new picture (nothing changed)
  }
  layout();
});

send("streamlit:componentReady", {apiVersion: 1});
