/* The book's map explorer and hover curves (book/explorer.md). No library, nothing fetched: the data
   sit in the page as JSON (<script type="application/json">), written by scripts/build_explorer.py.
   Jupyter Book adds every .js file under _static to every page, so this file does nothing on a page
   without the explorer's elements. */
(function () {
  "use strict";
  if (window.pwExplorerLoaded) {
    return; // the page may include it a second time explicitly
  }
  window.pwExplorerLoaded = true;
  var script = document.currentScript;
  var base = script && script.src ? script.src.replace(/[^/]*$/, "") + "data/" : "../_static/explorer/data/";
  var SVG = "http://www.w3.org/2000/svg";

  function ready(fn) {
    if (document.readyState !== "loading") {
      fn();
    } else {
      document.addEventListener("DOMContentLoaded", fn);
    }
  }

  function json(id) {
    var node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      node.setAttribute(k, attrs[k]);
    });
    if (text !== undefined) {
      node.textContent = text;
    }
    return node;
  }

  function fmt(v, digits) {
    if (v === null || v === undefined) {
      return "n/a";
    }
    return Number(v).toFixed(digits === undefined ? 1 : digits);
  }

  function sig(v) {
    if (v === null || v === undefined) {
      return "n/a";
    }
    return Math.abs(v) >= 100 ? Number(v).toFixed(1) : String(Number(Number(v).toPrecision(3)));
  }

  /* ---------- maps ---------- */

  function startMaps(index) {
    var photo = document.getElementById("explorer-photo");
    var criterion = document.getElementById("explorer-criterion");
    var slider = document.getElementById("explorer-sparsity");
    var image = document.getElementById("explorer-map");
    var readout = document.getElementById("explorer-readout");
    var original = document.getElementById("explorer-original");
    var baselines = document.getElementById("explorer-baselines");
    var ticks = document.getElementById("explorer-ticks");
    if (!photo || !criterion || !slider || !image || !readout) {
      return;
    }
    index.photos.forEach(function (p, i) {
      var text = p.name + " (predicted: " + p.predicted + ", p = " + fmt(p.probability, 2) + ")";
      photo.appendChild(el("option", { value: String(i) }, text));
    });
    index.criteria.forEach(function (c) {
      criterion.appendChild(el("option", { value: c.name }, c.label));
    });
    slider.min = "0";
    slider.max = String(index.sparsities.length - 1);
    slider.step = "1";
    var start = index.sparsities.indexOf(90);
    slider.value = String(start >= 0 ? start : 0);
    if (ticks) {
      index.sparsities.forEach(function (s) {
        ticks.appendChild(el("span", {}, fmt(s, 0) + " %"));
      });
    }
    var shown = {};
    if (baselines) {
      index.baselines.forEach(function (label) {
        var fig = el("figure", { class: "explorer-baseline" });
        var img = el("img", { width: "200", height: "200", alt: label + " map" });
        fig.appendChild(img);
        fig.appendChild(el("figcaption", {}, label));
        baselines.appendChild(fig);
        shown[label] = img;
      });
    }

    function update() {
      var p = index.photos[Number(photo.value)];
      var entries = p.maps[criterion.value];
      var k = Number(slider.value);
      var e = entries[k];
      var label = index.criteria.filter(function (c) {
        return c.name === criterion.value;
      })[0].label;
      image.src = base + e.src;
      image.alt = label + " at " + fmt(e.requested, 0) + " % sparsity, " + p.name;
      slider.setAttribute("aria-valuetext", fmt(e.requested, 0) + " % of the neurons removed");
      if (e.requested === 0) {
        readout.textContent =
          "Sparsity 0 % (the full network): PathwayGrad is the plain input gradient, the same for every criterion; " +
          "output change 0 %.";
      } else {
        readout.textContent =
          "Sparsity: " + fmt(e.requested, 0) + " % of the neurons removed requested, " + fmt(e.realized, 2) +
          " % realized. The path's output change: " + fmt(e.output_change, 1) + " % of p(" + p.predicted + ").";
      }
      if (original) {
        original.src = base + p.photo;
        original.alt = "photo: " + p.name;
      }
      Object.keys(shown).forEach(function (labelKey) {
        shown[labelKey].src = base + p.baselines[labelKey];
      });
    }

    [photo, criterion].forEach(function (c) {
      c.addEventListener("change", update);
    });
    slider.addEventListener("input", update);
    slider.addEventListener("change", update);
    update();
  }

  /* ---------- hover curves ---------- */

  function niceTicks(lo, hi, count) {
    var span = hi - lo || Math.abs(hi) || 1;
    var step = Math.pow(10, Math.floor(Math.log10(span / count)));
    var err = (count * step) / span;
    if (err <= 0.15) {
      step *= 10;
    } else if (err <= 0.35) {
      step *= 5;
    } else if (err <= 0.75) {
      step *= 2;
    }
    var out = [];
    // up to the first tick at or above hi, so that the top of the axis is labelled
    for (var v = Math.ceil(lo / step) * step; v < hi + step * (1 - 1e-9); v += step) {
      out.push(Math.round(v / step) * step);
    }
    return out;
  }

  function svg(tag, attrs, text) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (k) {
      node.setAttribute(k, attrs[k]);
    });
    if (text !== undefined) {
      node.textContent = text;
    }
    return node;
  }

  function drawPanel(panel, width, height, tooltip, hidden) {
    var m = { l: 54, r: 12, t: 26, b: 42 };
    var root = svg("svg", {
      width: String(width),
      height: String(height),
      viewBox: "0 0 " + width + " " + height,
      class: "explorer-chart",
      role: "img",
      "aria-label": panel.title,
    });
    var xs = panel.x;
    var values = [];
    panel.series.forEach(function (s) {
      s.y.forEach(function (v) {
        if (v !== null) {
          values.push(v);
        }
      });
    });
    var xlo = Math.min.apply(null, xs);
    var xhi = Math.max.apply(null, xs);
    var ylo = Math.min(0, Math.min.apply(null, values));
    var yhi = Math.max.apply(null, values);
    var yt = niceTicks(ylo, yhi, 5);
    ylo = Math.min(ylo, yt[0]);
    yhi = Math.max(yhi, yt[yt.length - 1]);
    function X(v) {
      return m.l + ((v - xlo) / (xhi - xlo || 1)) * (width - m.l - m.r);
    }
    function Y(v) {
      return height - m.b - ((v - ylo) / (yhi - ylo || 1)) * (height - m.t - m.b);
    }
    root.appendChild(svg("text", { x: String(m.l), y: "16", class: "explorer-chart-title" }, panel.title));
    yt.forEach(function (v) {
      root.appendChild(svg("line", { x1: m.l, x2: width - m.r, y1: Y(v), y2: Y(v), class: "explorer-grid" }));
      root.appendChild(svg("text", { x: m.l - 6, y: Y(v) + 4, class: "explorer-tick", "text-anchor": "end" }, String(+v.toFixed(6))));
    });
    niceTicks(xlo, xhi, 8).filter(function (v) {
      return v <= xhi + 1e-9;
    }).forEach(function (v) {
      root.appendChild(svg("text", { x: X(v), y: height - m.b + 16, class: "explorer-tick", "text-anchor": "middle" }, String(v)));
    });
    root.appendChild(svg("text", { x: (m.l + width - m.r) / 2, y: height - 6, class: "explorer-axis", "text-anchor": "middle" }, panel.xlabel));
    var yl = svg("text", { x: 0, y: 0, class: "explorer-axis", "text-anchor": "middle" }, panel.ylabel);
    yl.setAttribute("transform", "translate(13," + (m.t + height - m.b) / 2 + ") rotate(-90)");
    root.appendChild(yl);
    panel.series.forEach(function (s) {
      var g = svg("g", { "data-series": s.label });
      if (hidden[s.label]) {
        g.style.display = "none";
      }
      var d = "";
      var pen = false;
      s.y.forEach(function (v, i) {
        if (v === null) {
          pen = false;
          return;
        }
        d += (pen ? "L" : "M") + X(xs[i]).toFixed(1) + " " + Y(v).toFixed(1);
        pen = true;
      });
      var line = svg("path", { d: d, fill: "none", stroke: s.colour, "stroke-width": "1.8" });
      if (s.dashed) {
        line.setAttribute("stroke-dasharray", "5 3");
      }
      g.appendChild(line);
      s.y.forEach(function (v, i) {
        if (v === null) {
          return;
        }
        g.appendChild(svg("circle", { cx: X(xs[i]), cy: Y(v), r: s.dashed ? "2" : "2.8", fill: s.colour }));
        var hit = svg("circle", { cx: X(xs[i]), cy: Y(v), r: "7", fill: "transparent", class: "explorer-hit" });
        var text = s.label + ": " + sig(v) + " at " + panel.xlabel.replace(/ \(%\)$/, "") + " " + xs[i] + " %";
        if (s.low && s.high && s.low[i] !== null) {
          text += " (" + panel.interval + ": " + sig(s.low[i]) + " to " + sig(s.high[i]) + ")";
        }
        hit.addEventListener("mouseenter", function (ev) {
          tooltip.textContent = text;
          tooltip.style.display = "block";
          tooltip.style.borderColor = s.colour;
          place(ev);
        });
        hit.addEventListener("mousemove", place);
        hit.addEventListener("mouseleave", function () {
          tooltip.style.display = "none";
        });
        g.appendChild(hit);
      });
      root.appendChild(g);
    });
    function place(ev) {
      var box = tooltip.parentNode.getBoundingClientRect();
      tooltip.style.left = Math.min(ev.clientX - box.left + 12, box.width - 260) + "px";
      tooltip.style.top = ev.clientY - box.top + 14 + "px";
    }
    return root;
  }

  function startCurves(data) {
    data.figures.forEach(function (figure) {
      var holder = document.getElementById("explorer-curves-" + figure.id);
      if (!holder) {
        return;
      }
      holder.classList.add("explorer-curves");
      var tooltip = el("div", { class: "explorer-tooltip", role: "status" });
      var grid = el("div", { class: "explorer-panels" });
      var legend = el("div", { class: "explorer-legend" });
      var hidden = {};
      var seen = {};
      var full = figure.id === "sweep";
      var width = full ? 760 : 376;
      figure.panels.forEach(function (panel) {
        grid.appendChild(drawPanel(panel, width, full ? 250 : 270, tooltip, hidden));
        panel.series.forEach(function (s) {
          if (seen[s.label]) {
            return;
          }
          seen[s.label] = true;
          var item = el("button", { type: "button", class: "explorer-key", title: "show or hide " + s.label });
          var swatch = el("span", { class: "explorer-swatch" + (s.dashed ? " explorer-dashed" : "") });
          swatch.style.borderColor = s.colour;
          item.appendChild(swatch);
          item.appendChild(document.createTextNode(s.label));
          item.addEventListener("click", function () {
            hidden[s.label] = !hidden[s.label];
            item.classList.toggle("explorer-off", hidden[s.label]);
            holder.querySelectorAll("g[data-series]").forEach(function (g) {
              if (g.getAttribute("data-series") === s.label) {
                g.style.display = hidden[s.label] ? "none" : "";
              }
            });
          });
          legend.appendChild(item);
        });
      });
      holder.appendChild(legend);
      holder.appendChild(grid);
      holder.appendChild(tooltip);
    });
  }

  ready(function () {
    var index = json("explorer-index");
    if (index) {
      startMaps(index);
    }
    var curves = json("explorer-curves");
    if (curves) {
      startCurves(curves);
    }
  });
})();
