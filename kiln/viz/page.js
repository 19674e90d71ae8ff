// kiln viz: the page's script (inlined into every page by page.py). Tabs, pan and zoom (the
// SVG's viewBox), a details panel for the clicked box, and find. It reads the page only: no
// request leaves it.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("kiln-data").textContent);
  const stages = Array.from(document.querySelectorAll(".stage"));
  const tabs = Array.from(document.querySelectorAll("nav button"));
  const panel = document.getElementById("details");
  const find = document.getElementById("find");
  const views = new Map();          // svg -> {x, y, s}: top-left corner and pixels per unit
  const intro = Array.from(panel.childNodes, (n) => n.cloneNode(true));
  let current = 0;
  let found = {query: "", list: [], next: 0};

  function svgOf(i) { return stages[i].querySelector("svg.graph"); }

  function show(i) {
    current = i;
    stages.forEach((s, k) => s.classList.toggle("on", k === i));
    tabs.forEach((t, k) => t.classList.toggle("on", k === i));
    history.replaceState(null, "", "#" + stages[i].dataset.name);
    const svg = svgOf(i);
    if (views.has(svg)) apply(svg); else fit(svg);
  }

  // `#fusion` opens a stage; `#fusion:s3-n5` also selects box s3-n5 and centres it (the
  // address of a selected box can be shared).
  function openHash() {
    const [name, box] = decodeURIComponent(location.hash.slice(1)).split(":");
    let i = stages.findIndex((s) => s.dataset.name === name);
    if (i < 0) i = stages.findIndex((s) => s.dataset.name === "fusion");
    show(Math.max(i, 0));
    const el = box && document.getElementById(box);
    if (el && stages[current].contains(el)) {
      select(svgOf(current), el);
      centre(svgOf(current), el);
    }
  }

  function apply(svg) {
    const v = views.get(svg);
    const r = svg.getBoundingClientRect();
    if (!r.width || !r.height) return;
    svg.setAttribute("viewBox", [v.x, v.y, r.width / v.s, r.height / v.s].join(" "));
  }

  // The whole drawing in view, centred, when its text can still be read then (never
  // magnified past 1.5); else a readable scale, at the top of the drawing, around its first
  // op. F shows the whole drawing whatever its size.
  function fit(svg, whole) {
    const r = svg.getBoundingClientRect();
    const w = +svg.dataset.w, h = +svg.dataset.h;
    if (!r.width || !r.height) return;
    const s = Math.min(r.width / w, r.height / h, 1.5);
    if (whole || s >= 0.5) {
      views.set(svg, {x: (w - r.width / s) / 2, y: (h - r.height / s) / 2, s: s});
      apply(svg);
      return;
    }
    views.set(svg, {x: 0, y: 0, s: 0.8});
    apply(svg);
    const first = svg.querySelector('[id$="-n0"]');
    if (first) {
      centre(svg, first);
      views.get(svg).y = 0;
      apply(svg);
    }
  }

  function toUnits(svg, clientX, clientY) {
    const v = views.get(svg), r = svg.getBoundingClientRect();
    return [v.x + (clientX - r.left) / v.s, v.y + (clientY - r.top) / v.s];
  }

  function zoom(svg, clientX, clientY, factor) {
    const v = views.get(svg), r = svg.getBoundingClientRect();
    const [ux, uy] = toUnits(svg, clientX, clientY);
    v.s = Math.min(8, Math.max(0.02, v.s * factor));
    v.x = ux - (clientX - r.left) / v.s;
    v.y = uy - (clientY - r.top) / v.s;
    apply(svg);
  }

  function centre(svg, el) {
    const v = views.get(svg), r = svg.getBoundingClientRect(), b = el.getBoundingClientRect();
    const [ux, uy] = toUnits(svg, b.left + b.width / 2, b.top + b.height / 2);
    v.x = ux - r.width / 2 / v.s;
    v.y = uy - r.height / 2 / v.s;
    apply(svg);
  }

  function clearMarks(svg) {
    svg.querySelectorAll(".selected, .near, .hot").forEach(
      (e) => e.classList.remove("selected", "near", "hot"));
  }

  function select(svg, box) {
    clearMarks(svg);
    box.classList.add("selected");
    const id = box.id;
    svg.querySelectorAll(".link").forEach((link) => {
      const other = link.dataset.src === id ? link.dataset.dst :
        link.dataset.dst === id ? link.dataset.src : null;
      if (other === null) return;
      link.classList.add("hot");
      const near = document.getElementById(other);
      if (near) near.classList.add("near");
    });
    showDetails(data.details[id]);
    history.replaceState(null, "", "#" + stages[current].dataset.name + ":" + id);
  }

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }

  function showDetails(d) {
    panel.replaceChildren();
    if (!d) { panel.append(el("p", "No details for this box.", "empty")); return; }
    panel.append(el("h2", d.title));
    const table = el("table");
    for (const [key, value] of d.rows || []) {
      const tr = el("tr");
      tr.append(el("td", key), el("td", value));
      table.append(tr);
    }
    panel.append(table);
    if (d.source) {
      panel.append(el("h3", "source line"), el("pre", d.source));
    }
    if (d.kernel) {
      const text = d.mlir && data.mlir[d.mlir];
      panel.append(el("h3", text ? "MLIR of kernel @" + d.kernel : "kernel @" + d.kernel));
      panel.append(text ? el("pre", text) :
        el("p", "No MLIR for this kernel in this picture.", "empty"));
    }
  }

  function wire(svg) {
    let drag = null;
    svg.addEventListener("wheel", (e) => {
      e.preventDefault();
      zoom(svg, e.clientX, e.clientY, Math.exp(-e.deltaY * 0.0015));
    }, {passive: false});
    svg.addEventListener("pointerdown", (e) => {
      const v = views.get(svg);
      drag = {x: e.clientX, y: e.clientY, vx: v.x, vy: v.y, moved: false, target: e.target};
      svg.setPointerCapture(e.pointerId);
    });
    svg.addEventListener("pointermove", (e) => {
      if (!drag) return;
      const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
      if (!drag.moved && Math.abs(dx) + Math.abs(dy) < 4) return;
      drag.moved = true;
      svg.classList.add("dragging");
      const v = views.get(svg);
      v.x = drag.vx - dx / v.s;
      v.y = drag.vy - dy / v.s;
      apply(svg);
    });
    svg.addEventListener("pointerup", () => {
      if (drag && !drag.moved) {
        const box = drag.target.closest("[data-box]");
        if (box) select(svg, box); else clearMarks(svg);
      }
      drag = null;
      svg.classList.remove("dragging");
    });
  }

  function findNext() {
    const query = find.value.trim().toLowerCase();
    const svg = svgOf(current);
    svg.querySelectorAll(".found").forEach((e) => e.classList.remove("found"));
    if (!query) return;
    if (query !== found.query || found.svg !== svg) {
      const boxes = Array.from(svg.querySelectorAll("[data-box]"));
      found = {query: query, svg: svg, next: 0, list: boxes.filter((b) => {
        const d = data.details[b.id];
        const text = (b.textContent + " " + (d ? JSON.stringify(d.rows) : "")).toLowerCase();
        return text.includes(query);
      })};
    }
    found.list.forEach((b) => b.classList.add("found"));
    if (!found.list.length) return;
    const box = found.list[found.next++ % found.list.length];
    select(svg, box);
    centre(svg, box);
  }

  tabs.forEach((t, i) => t.addEventListener("click", () => show(i)));
  stages.forEach((s, i) => wire(svgOf(i)));
  find.addEventListener("keydown", (e) => { if (e.key === "Enter") findNext(); });
  document.addEventListener("keydown", (e) => {
    if (e.target === find) return;
    if (e.key === "f" || e.key === "F") fit(svgOf(current), true);
    if (e.key === "Escape") { clearMarks(svgOf(current)); panel.replaceChildren(...intro); }
    if (e.key === "/") { e.preventDefault(); find.focus(); }
  });
  window.addEventListener("resize", () => apply(svgOf(current)));

  openHash();
  document.body.dataset.ready = "1";
})();
