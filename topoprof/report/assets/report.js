/* topoprof report: the layer table (sort, filter) and the layer graph (layered DAG with
   foldable module groups, time as colour). Reads the report document from #report-data; uses
   the helpers of common.js (window.topoprof). Strings from the run reach the page only through
   textContent or setAttribute. */
(function () {
  'use strict';
  var T = window.topoprof;
  var D = T.data();
  var NS = T.NS, isNum = T.isNum, p3 = T.p3, fmtUs = T.fmtUs, fmtSi = T.fmtSi, fmtPct = T.fmtPct;
  var el = T.el, sel = T.sel, shortName = T.shortName, clip = T.clip;

  // ---------------------------------------------------------------- layer table
  var TABLE_LIMIT = 300;  // rows drawn before "show all" (sorting and filtering see every row)
  var layers = D.layers || [];
  function roof(r, k) { return r.roofline ? r.roofline[k] : null; }
  function si(v) { return fmtSi(v, ''); }
  var filterBox = document.getElementById('layer-filter');
  var leavesBox = document.getElementById('layer-leaves');
  var rowByName = {};
  var layerTable = null;
  // trace mode: the device time of each layer's own kernels gets two columns (as in the template)
  var hasDevice = layers.some(function (l) { return isNum(l.device_fwd_us); });
  var tableEl = document.getElementById('layer-table');
  if (tableEl) {
    layerTable = T.makeTable({
      table: tableEl,
      rows: layers,
      limit: TABLE_LIMIT,
      filter: filterBox,
      count: document.getElementById('layer-count'),
      extraFilter: function (r) { return !(leavesBox && leavesBox.checked) || r.leaf; },
      textOf: function (r) { return r.name + ' ' + r.kind; },
      rowInit: function (tr, r) {
        tr.setAttribute('data-name', r.name);
        if (!r.leaf) tr.classList.add('container');
        if (r.critical) tr.classList.add('crit');
        rowByName[r.name] = tr;
      },
      cols: [
        { key: 'name', str: true, get: function (r) { return r.name === '' ? '(root)' : r.name; }, render: function (r) {
          var td = el('td', { 'class': 'name' }, r.name === '' ? '(root)' : r.name);
          td.style.paddingLeft = (8 + 10 * (r.depth || 0)) + 'px';
          var tip = r.name + ' (' + r.kind + ')';
          if (r.in_shapes && r.in_shapes.length) tip += '\nin ' + JSON.stringify(r.in_shapes);
          if (r.out_shapes && r.out_shapes.length) tip += '\nout ' + JSON.stringify(r.out_shapes);
          if (r.dtype) tip += '\n' + r.dtype;
          if (r.critical) tip += '\non the critical path';
          td.title = tip;
          return td;
        } },
        { key: 'kind', str: true },
        { key: 'calls', fmt: function (v) { return isNum(v) ? String(v) : '–'; } },
        { key: 'fwd_us', fmt: fmtUs },
        { key: 'bwd_us', fmt: fmtUs },
        { key: 'self_fwd_us', fmt: fmtUs },
        { key: 'self_bwd_us', fmt: fmtUs }
      ].concat(hasDevice ? [
        { key: 'device_fwd_us', fmt: fmtUs },
        { key: 'device_bwd_us', fmt: fmtUs }
      ] : []).concat([
        { key: 'self_us', fmt: fmtUs },
        { key: 'share', fmt: fmtPct },
        { key: 'flops', fmt: si },
        { key: 'achieved_flop_per_s', fmt: si },
        { key: 'intensity', get: function (r) { return roof(r, 'intensity_flop_per_byte'); },
          fmt: function (v) { return isNum(v) ? p3(v) : '–'; } },
        { key: 'projected_us', get: function (r) { return roof(r, 'projected_us'); }, fmt: fmtUs },
        { key: 'bound', str: true, get: function (r) { return roof(r, 'bound') || ''; }, render: function (r, v) {
          var td = el('td');
          if (v) td.appendChild(el('span', { 'class': 'bound b-' + v }, v));
          return td;
        } },
        { key: 'params', fmt: si }
      ])
    });
    if (leavesBox) leavesBox.addEventListener('change', layerTable.refresh);
  }

  function showLayer(name) {
    var tr = rowByName[name];
    if (!tr || !filterBox || !layerTable) return;
    filterBox.value = name;
    if (leavesBox) leavesBox.checked = false;
    layerTable.refresh();
    Array.prototype.forEach.call(tableEl.querySelectorAll('tr.hit'), function (r) { r.classList.remove('hit'); });
    tr.classList.add('hit');
    layerTable.reveal(tr);
    document.getElementById('layers').scrollIntoView();
    tr.scrollIntoView({ block: 'nearest' });
  }
  Array.prototype.forEach.call(document.querySelectorAll('.layer-link'), function (b) {
    b.addEventListener('click', function () { showLayer(b.getAttribute('data-layer')); });
  });
  Array.prototype.forEach.call(document.querySelectorAll('svg.roofline circle[data-layer]'), function (c) {
    c.addEventListener('click', function () { showLayer(c.getAttribute('data-layer')); });
  });

  // ---------------------------------------------------------------- layer graph
  var box = document.getElementById('graph-box');
  if (!box || !D.graph) return;
  var G = D.graph;
  var IN = G.input, OUT = G.output;
  var NODE_W = 150, NODE_H = 32, COL_W = 172, GAP = 22, HDR = 18, FTR = 7, CHAR_W = 6.6;
  var VISIBLE_LIMIT = 160;
  var SPINE_PULL = 0.2;  // fold groups until at most this many nodes show at first
  var mods = {}, kids = {}, ancestors = {};
  layers.forEach(function (l) { mods[l.name] = l; });
  layers.forEach(function (l) {
    if (l.parent !== null && l.parent !== undefined && mods[l.parent]) (kids[l.parent] = kids[l.parent] || []).push(l.name);
  });
  layers.forEach(function (l) {
    var a = [], cur = l.parent, guard = 0;
    while (cur !== null && cur !== undefined && mods[cur] && guard++ < 1000) { a.push(cur); cur = mods[cur].parent; }
    ancestors[l.name] = a.reverse();  // outermost first
  });
  var endpoints = {};
  G.edges.forEach(function (e) { endpoints[e.src] = true; endpoints[e.dst] = true; });
  var order = {};
  layers.forEach(function (l) { order[l.name] = isNum(l.order) ? l.order : 1e9; });
  order[IN] = G.input_order; order[OUT] = G.output_order;
  var minOrder = {};
  function subtreeMin(name) {
    if (minOrder[name] !== undefined) return minOrder[name];
    var m = (mods[name] && (mods[name].leaf || endpoints[name])) ? order[name] : 1e9;
    (kids[name] || []).forEach(function (k) { m = Math.min(m, subtreeMin(k)); });
    minOrder[name] = m;
    return m;
  }
  layers.forEach(function (l) { subtreeMin(l.name); });
  var containers = layers.filter(function (l) { return !l.leaf && (kids[l.name] || []).length; });
  var maxDepth = containers.reduce(function (m, c) { return Math.max(m, c.depth || 0); }, 0);
  var folded = {};

  function rep(name) {
    var a = ancestors[name];
    if (a) for (var i = 0; i < a.length; i++) if (folded[a[i]]) return a[i];
    return name;
  }
  function visibleNodes() {
    var vis = {};
    vis[IN] = true; vis[OUT] = true;
    layers.forEach(function (l) {
      if (l.leaf || endpoints[l.name]) vis[rep(l.name)] = true;
    });
    return vis;
  }
  function countVisible() { return Object.keys(visibleNodes()).length; }
  function foldFrom(depth) {
    folded = {};
    if (depth === null) return;
    containers.forEach(function (c) { if ((c.depth || 0) >= depth) folded[c.name] = true; });
  }
  // First view: the deepest folding that keeps the graph readable.
  (function initialFold() {
    if (countVisible() <= VISIBLE_LIMIT) return;
    for (var d = maxDepth; d >= 1; d--) {
      foldFrom(d);
      if (countVisible() <= VISIBLE_LIMIT) return;
    }
  })();

  // colour ramp (YlOrRd)
  var RAMP = [[255, 247, 204], [254, 217, 118], [253, 141, 60], [227, 26, 28], [128, 0, 38]];
  function colour(t) {
    t = Math.max(0, Math.min(1, t)) * (RAMP.length - 1);
    var i = Math.min(Math.floor(t), RAMP.length - 2), f = t - i;
    var c = RAMP[i].map(function (v, k) { return Math.round(v + (RAMP[i + 1][k] - v) * f); });
    return 'rgb(' + c.join(',') + ')';
  }
  function nodeTime(name) {
    var l = mods[name];
    if (!l) return 0;
    if (folded[name]) return (l.fwd_us || 0) + (l.bwd_us || 0);
    return l.self_us || 0;
  }
  function ord(name) { return folded[name] ? minOrder[name] : order[name]; }

  var legend = document.getElementById('graph-legend');
  var info = document.getElementById('graph-info');
  var depthSel = document.getElementById('graph-depth');
  if (depthSel) {
    depthSel.appendChild(el('option', { value: 'all' }, 'all'));
    for (var d = 1; d <= maxDepth; d++) depthSel.appendChild(el('option', { value: String(d) }, String(d)));
    depthSel.addEventListener('change', function () {
      foldFrom(depthSel.value === 'all' ? null : Number(depthSel.value));
      draw();
    });
  }
  var bExpand = document.getElementById('graph-expand');
  var bCollapse = document.getElementById('graph-collapse');
  if (bExpand) bExpand.addEventListener('click', function () { foldFrom(null); draw(); });
  if (bCollapse) bCollapse.addEventListener('click', function () { foldFrom(1); draw(); });

  function toggle(name) {
    if (folded[name]) delete folded[name]; else folded[name] = true;
    draw();
  }

  function draw() {
    var vis = visibleNodes();
    var names = Object.keys(vis).sort(function (a, b) { return ord(a) - ord(b); });
    // edges between the visible representatives
    var emap = {};
    G.edges.forEach(function (e) {
      var u = rep(e.src), v = rep(e.dst);
      if (u === v || !vis[u] || !vis[v]) return;
      var k = u + '\u0000' + v;
      var m = emap[k];
      if (!m) m = emap[k] = { u: u, v: v, bytes: 0, n: 0, via: {}, shape: e.shape, dtype: e.dtype };
      m.bytes += e.bytes || 0; m.n += 1;
      (e.via || []).forEach(function (o) { m.via[o] = true; });
    });
    var edges = Object.keys(emap).map(function (k) { return emap[k]; });
    var preds = {}, succs = {};
    edges.forEach(function (e) {
      e.back = ord(e.u) >= ord(e.v);
      if (!e.back) { (preds[e.v] = preds[e.v] || []).push(e.u); (succs[e.u] = succs[e.u] || []).push(e.v); }
    });
    // critical path, mapped onto what is visible
    var crit = {}, critEdge = {}, prev = null;
    (G.critical_path.nodes || []).forEach(function (n) {
      var r = vis[n] ? n : rep(n);
      if (!vis[r]) return;
      crit[r] = true;
      if (prev !== null && prev !== r) critEdge[prev + '\u0000' + r] = true;
      prev = r;
    });
    // A back edge u -> v means v runs again after u (a module called twice): whatever v feeds
    // later than u comes from that later call, so it is placed below u (a layering constraint
    // only; nothing is drawn for it).
    var after = {};
    edges.forEach(function (e) {
      if (!e.back) return;
      (succs[e.v] || []).forEach(function (w) { if (ord(w) > ord(e.u)) (after[w] = after[w] || []).push(e.u); });
    });
    // layers: longest path from the top; sources sit just above their first consumer
    var layer = {};
    names.forEach(function (n) {
      var l = 0;
      (preds[n] || []).forEach(function (p) { l = Math.max(l, layer[p] + 1); });
      (after[n] || []).forEach(function (p) { if (layer[p] !== undefined) l = Math.max(l, layer[p] + 1); });
      layer[n] = l;
    });
    names.forEach(function (n, i) {
      if (n === IN || (preds[n] || []).length) return;
      var s = succs[n] || [];
      if (s.length && !(after[n] || []).length) layer[n] = Math.max(0, Math.min.apply(null, s.map(function (x) { return layer[x]; })) - 1);
      else if (i > 0) layer[n] = layer[names[i - 1]] + 1;  // unconnected: listed in order, one per row
    });
    var byLayer = [];
    names.forEach(function (n) { (byLayer[layer[n]] = byLayer[layer[n]] || []).push(n); });
    // x: the mean of the predecessors', then pushed apart
    var x = {};
    byLayer.forEach(function (ns) {
      if (!ns) return;
      var want = {};
      ns.forEach(function (n) {
        var ps = (preds[n] || []).filter(function (p) { return x[p] !== undefined; });
        // the mean of the predecessors, pulled a little towards the spine (x = 0) so that
        // asymmetric blocks repeated a hundred times do not drift sideways
        want[n] = ps.length ? (1 - SPINE_PULL) * ps.reduce(function (s, p) { return s + x[p]; }, 0) / ps.length : 0;
      });
      ns.sort(function (a, b) { return (want[a] - want[b]) || (ord(a) - ord(b)); });
      var last = -Infinity, dev = 0;
      ns.forEach(function (n) { x[n] = Math.max(want[n], last + COL_W); last = x[n]; dev += x[n] - want[n]; });
      dev /= ns.length;
      ns.forEach(function (n) { x[n] -= dev; });
    });
    // groups: unfolded containers around their visible descendants
    var groups = [];
    var memberOf = {};
    containers.forEach(function (c) {
      if (c.depth === 0 || folded[c.name] || rep(c.name) !== c.name) return;
      memberOf[c.name] = [];
      groups.push(c);
    });
    names.forEach(function (n) {
      (ancestors[n] || []).forEach(function (a) { if (memberOf[a]) memberOf[a].push(n); });
      if (mods[n] && !folded[n] && memberOf[n]) memberOf[n].push(n);  // a container's own-ops node
    });
    groups = groups.filter(function (g) { return memberOf[g.name].length; });
    var height = {};
    groups.slice().sort(function (a, b) { return b.depth - a.depth; }).forEach(function (g) {
      var h = 0;
      (kids[g.name] || []).forEach(function (k) { if (height[k] !== undefined) h = Math.max(h, height[k] + 1); });
      height[g.name] = h;
    });
    var starts = [], ends = [];
    groups.forEach(function (g) {
      var ls = memberOf[g.name].map(function (n) { return layer[n]; });
      g._first = Math.min.apply(null, ls); g._last = Math.max.apply(null, ls);
      (starts[g._first] = starts[g._first] || []).push(g);
      (ends[g._last] = ends[g._last] || []).push(g);
    });
    var rowTop = [], y = 8;
    for (var L = 0; L < byLayer.length; L++) {
      var st = starts[L] || [], en = ends[L] || [];
      st.sort(function (a, b) { return a.depth - b.depth; });
      y += st.length * HDR;
      rowTop[L] = y;
      st.forEach(function (g, k) { g._top = y - (st.length - k) * HDR; });
      y += NODE_H;
      en.sort(function (a, b) { return b.depth - a.depth; });
      en.forEach(function (g, k) { g._bottom = y + (k + 1) * FTR; });
      y += en.length * FTR + GAP;
    }
    var minX = Infinity, maxX = -Infinity;
    names.forEach(function (n) { minX = Math.min(minX, x[n] - NODE_W / 2); maxX = Math.max(maxX, x[n] + NODE_W / 2); });
    groups.forEach(function (g) {
      var pad = 8 + 9 * height[g.name];
      var xs = memberOf[g.name].map(function (n) { return x[n]; });
      g._label = '▾ ' + shortName(g.name) + ' · ' + g.kind;
      g._left = Math.min.apply(null, xs) - NODE_W / 2 - pad;
      g._right = Math.max.apply(null, xs) + NODE_W / 2 + pad;
      var need = Math.min(g._label.length, 40) * CHAR_W + 16 - (g._right - g._left);
      if (need > 0) { g._left -= need / 2; g._right += need / 2; }
      minX = Math.min(minX, g._left); maxX = Math.max(maxX, g._right);
    });
    var backRoom = edges.some(function (e) { return e.back; }) ? 60 : 0;
    var ox = 16 + NODE_W / 4 - minX;
    var W = Math.ceil(maxX - minX + 32 + NODE_W / 4 + backRoom), H = Math.ceil(y + 8);
    var maxT = 0;
    names.forEach(function (n) { maxT = Math.max(maxT, nodeTime(n)); });

    var svg = sel('svg', { width: W, height: H, viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-label': 'layer graph' });
    var defs = sel('defs');
    [['arrow', '#9aa5b1'], ['arrow-crit', '#c0392b']].forEach(function (m) {
      var mk = sel('marker', { id: m[0], viewBox: '0 0 8 8', refX: '7', refY: '4', markerWidth: '8', markerHeight: '8', markerUnits: 'userSpaceOnUse', orient: 'auto' });
      mk.appendChild(sel('path', { d: 'M0,0 L8,4 L0,8 z', fill: m[1] }));
      defs.appendChild(mk);
    });
    svg.appendChild(defs);
    // groups under the edges, their labels over them (an edge passing a label hides behind it)
    var gGroups = sel('g'), gEdges = sel('g'), gLabels = sel('g'), gNodes = sel('g');
    svg.appendChild(gGroups); svg.appendChild(gEdges); svg.appendChild(gLabels); svg.appendChild(gNodes);
    groups.sort(function (a, b) { return a.depth - b.depth; }).forEach(function (g) {
      var gg = sel('g', { 'class': 'group' });
      var w = g._right - g._left;
      gg.appendChild(sel('rect', { x: g._left + ox, y: g._top, width: w, height: g._bottom - g._top, rx: 7 }));
      var t = fmtUs((g.fwd_us || 0) + (g.bwd_us || 0));
      var text = clip(g._label, Math.max(6, Math.floor((w - 12) / CHAR_W)));
      var lg = sel('g', { 'class': 'group' });
      lg.appendChild(sel('rect', { 'class': 'glabelbg', x: g._left + ox + 4, y: g._top + 2, height: 15,
        width: Math.min(w - 8, text.length * CHAR_W + 8), rx: 3 }));
      var label = sel('text', { 'class': 'glabel', x: g._left + ox + 8, y: g._top + 13 }, text);
      label.appendChild(sel('title', null, g.name + ' (' + g.kind + '): ' + t + ' fwd+bwd inclusive. Click to fold.'));
      label.addEventListener('click', function () { toggle(g.name); });
      lg.appendChild(label);
      gLabels.appendChild(lg);
      gGroups.appendChild(gg);
    });
    function cx(n) { return x[n] + ox; }
    edges.forEach(function (e) {
      var isCrit = critEdge[e.u + '\u0000' + e.v];
      var w = Math.max(0.8, Math.min(3.5, 0.6 + Math.log10(Math.max(e.bytes, 1)) / 3));
      var d;
      if (!e.back) {
        var x1 = cx(e.u), y1 = rowTop[layer[e.u]] + NODE_H, x2 = cx(e.v), y2 = rowTop[layer[e.v]] - 1;
        if (layer[e.v] - layer[e.u] > 1) {
          // a long edge (a skip connection) goes round the nodes between, on the side it leans to
          var side = x2 > x1 ? 1 : -1;
          var xo = (side > 0 ? Math.max(x1, x2) : Math.min(x1, x2)) + side * (NODE_W / 2 + 10 + (e.bytes % 7));
          d = 'M' + x1 + ',' + y1 + ' C' + x1 + ',' + (y1 + 14) + ' ' + xo + ',' + (y1 + 4) + ' ' + xo + ',' + (y1 + 26) +
            ' L' + xo + ',' + (y2 - 26) + ' C' + xo + ',' + (y2 - 4) + ' ' + x2 + ',' + (y2 - 14) + ' ' + x2 + ',' + y2;
        } else {
          var dy = Math.max(10, (y2 - y1) / 2);
          d = 'M' + x1 + ',' + y1 + ' C' + x1 + ',' + (y1 + dy) + ' ' + x2 + ',' + (y2 - dy) + ' ' + x2 + ',' + y2;
        }
      } else {
        var bx1 = cx(e.u) + NODE_W / 2, by1 = rowTop[layer[e.u]] + NODE_H / 2;
        var bx2 = cx(e.v) + NODE_W / 2 + 1, by2 = rowTop[layer[e.v]] + NODE_H / 2;
        var out = Math.max(bx1, bx2) + 24 + Math.min(36, Math.abs(by1 - by2) / 20);
        d = 'M' + bx1 + ',' + by1 + ' C' + out + ',' + by1 + ' ' + out + ',' + by2 + ' ' + bx2 + ',' + by2;
      }
      var path = sel('path', { d: d, 'class': 'edge' + (e.back ? ' back' : '') + (isCrit ? ' crit' : ''),
        'stroke-width': w.toFixed(2), 'marker-end': 'url(#' + (isCrit ? 'arrow-crit' : 'arrow') + ')' });
      var via = Object.keys(e.via);
      path.appendChild(sel('title', null, (e.u === '' ? '(root)' : e.u) + ' → ' + (e.v === '' ? '(root)' : e.v) + '\n' +
        (e.shape ? JSON.stringify(e.shape) + ' ' : '') + (e.dtype || '') + ', ' + fmtSi(e.bytes, 'B') +
        (e.n > 1 ? ' (' + e.n + ' tensors)' : '') + (via.length ? '\nthrough ' + via.join(', ') : '') +
        (e.back ? '\n(goes back: the module is called again later in the pass)' : '')));
      gEdges.appendChild(path);
    });
    names.forEach(function (n) {
      var io = n === IN || n === OUT;
      var l = mods[n];
      var isFolded = !!folded[n];
      var t = nodeTime(n);
      var frac = maxT > 0 ? Math.sqrt(t / maxT) : 0;
      var g = sel('g', { 'class': 'gnode' + (io ? ' io' : '') + (isFolded ? ' folded' : '') + (crit[n] ? ' crit' : ''),
        transform: 'translate(' + (cx(n) - NODE_W / 2) + ',' + rowTop[layer[n]] + ')', 'data-name': n });
      var fill = io ? '#eef2f6' : colour(frac);
      g.appendChild(sel('rect', { width: NODE_W, height: NODE_H, rx: 5, fill: fill }));
      var dark = !io && frac > 0.62;
      var title = io ? n : (isFolded ? '▸ ' : '') + shortName(n) + (l && !l.leaf && !isFolded ? ' (own ops)' : '');
      var t1 = sel('text', { x: 7, y: 13, 'class': dark ? 't1 light' : 't1' }, clip(title, 24));
      g.appendChild(t1);
      if (!io && l) {
        var sub = l.kind + ' · ' + fmtUs(t) + (isFolded ? ' · ' + countLeaves(n) + ' layers' : '');
        g.appendChild(sel('text', { x: 7, y: 26, 'class': dark ? 't2 light' : 't2' }, clip(sub, 27)));
        var tip = (n === '' ? '(root)' : n) + ' (' + l.kind + ')\n' +
          (isFolded ? 'folded group: ' + fmtUs(t) + ' fwd+bwd inclusive, ' + countLeaves(n) + ' layers. Click to unfold.'
            : 'self ' + fmtUs(l.self_us) + ' (fwd ' + fmtUs(l.self_fwd_us) + ', bwd ' + fmtUs(l.self_bwd_us) + '), ' +
              fmtPct(l.share) + ' of the step') +
          '\nFLOPs ' + fmtSi(l.flops, '') + (l.roofline ? ', ' + l.roofline.bound + '-bound on the target' : '') +
          (l.out_shapes && l.out_shapes.length ? '\nout ' + JSON.stringify(l.out_shapes) : '');
        g.appendChild(sel('title', null, tip));
      } else {
        g.appendChild(sel('title', null, io ? (n === IN ? 'the model\'s inputs' : 'the model\'s outputs') : n));
      }
      g.addEventListener('click', function () {
        if (isFolded) toggle(n); else if (!io) showLayer(n);
      });
      gNodes.appendChild(g);
    });
    while (box.firstChild) box.removeChild(box.firstChild);
    box.appendChild(svg);
    if (legend) {
      while (legend.firstChild) legend.removeChild(legend.firstChild);
      legend.appendChild(document.createTextNode('0 '));
      var ramp = el('span', { 'class': 'ramp' });
      ramp.style.background = 'linear-gradient(to right,' + [0, 0.25, 0.5, 0.75, 1].map(function (t) { return colour(Math.sqrt(t)); }).join(',') + ')';
      legend.appendChild(ramp);
      legend.appendChild(document.createTextNode(' ' + fmtUs(maxT) + ' per step (self time; folded groups: inclusive)'));
    }
    if (info) info.textContent = names.length + ' nodes, ' + edges.length + ' edges shown; ' +
      layers.filter(function (l) { return l.leaf; }).length + ' layers in all' +
      (G.edges.length ? '' : ' (the run holds no tensor edges, e.g. profiled without graph capture: layers in module order)');
    if (depthSel) {
      var f = Object.keys(folded);
      var dmin = f.length ? Math.min.apply(null, f.map(function (k) { return mods[k].depth || 0; })) : null;
      var uniform = dmin !== null && containers.every(function (c) { return !!folded[c.name] === ((c.depth || 0) >= dmin); });
      depthSel.value = f.length === 0 ? 'all' : (uniform ? String(dmin) : '');
    }
    box.setAttribute('data-nodes', String(names.length));
  }
  var leafCount = {};
  function countLeaves(name) {
    if (leafCount[name] !== undefined) return leafCount[name];
    var c = mods[name] && mods[name].leaf ? 1 : 0;
    (kids[name] || []).forEach(function (k) { c += countLeaves(k); });
    leafCount[name] = c;
    return c;
  }
  draw();
  window.topoprofReport = { foldFrom: function (d) { foldFrom(d); draw(); }, toggle: toggle };
})();
