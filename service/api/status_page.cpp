#include "api/status_page.h"

namespace floodgate::api {

const std::string& status_page_html() {
  static const std::string kPage = R"HTML(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>floodgate</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:20px;margin:0 0 4px} .muted{color:#777}
table{border-collapse:collapse;width:100%;margin-top:16px;background:#fff}
th,td{padding:6px 8px;border-bottom:1px solid #eee;text-align:left;vertical-align:middle}
.bar{display:flex;height:14px;width:320px;background:#eee;border-radius:3px;overflow:hidden}
.bar span{display:block;height:100%}
.COMPLETED{background:#2e9d4f}.LAUNCHED{background:#4a90d9}.LAUNCHING{background:#9cc3ea}
.RETRY_WAIT{background:#f0ad4e}.FAILED,.LAUNCH_FAILED{background:#d9534f}.CRASHED{background:#8e2c2a}
.CANCELLED,.SKIPPED{background:#999}.PENDING{background:#eee}
.state{font-weight:600}.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px}
#engine{margin-top:8px}
</style></head><body>
<h1>floodgate</h1>
<div class="muted">Batches launched into Prefect. Refreshes every 2 s. <a href="/metrics">/metrics</a> · <a href="/readyz">/readyz</a></div>
<div id="engine" class="muted"></div>
<div class="legend muted" id="legend"></div>
<table><thead><tr><th>batch</th><th>state</th><th>progress</th><th>done / total</th><th>failed</th><th>created</th></tr></thead>
<tbody id="rows"><tr><td colspan="6" class="muted">loading…</td></tr></tbody></table>
<script>
const ORDER=["COMPLETED","LAUNCHED","LAUNCHING","RETRY_WAIT","FAILED","LAUNCH_FAILED","CRASHED","CANCELLED","SKIPPED","PENDING"];
document.getElementById("legend").innerHTML=ORDER.map(s=>`<span class="${s}"></span>${s}`).join("");
function esc(s){return String(s).replace(/[&<>"]/g,c=>({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c]))}
async function refresh(){
  try{
    const r=await fetch("/v1/batches?limit=200");const d=await r.json();
    const rows=d.batches.slice().reverse().map(b=>{
      const t=Math.max(1,b.total);
      const bar=ORDER.map(s=>b.counts[s]?`<span class="${s}" title="${s}: ${b.counts[s]}" style="width:${100*b.counts[s]/t}%"></span>`:"").join("");
      const done=["COMPLETED","FAILED","CRASHED","CANCELLED","LAUNCH_FAILED","SKIPPED"].reduce((a,s)=>a+(b.counts[s]||0),0);
      const failed=(b.counts.FAILED||0)+(b.counts.CRASHED||0)+(b.counts.LAUNCH_FAILED||0);
      return `<tr><td><code>${esc(b.id)}</code><div class="muted">${esc(b.deployment)}</div></td><td class="state">${esc(b.state)}</td><td><div class="bar">${bar}</div></td><td>${done} / ${b.total}</td><td>${failed}</td><td class="muted">${esc(b.created_at)}</td></tr>`;
    });
    document.getElementById("rows").innerHTML=rows.join("")||'<tr><td colspan="6" class="muted">no batches yet</td></tr>';
    const e=await (await fetch("/readyz")).json();
    const g=e.engine||{};
    document.getElementById("engine").textContent=`${e.status} · in flight ${g.in_flight}/${g.in_flight_limit} (${g.limit_algorithm}) · breaker ${g.breaker} · ready items ${g.ready_items} · active batches ${g.active_batches}`;
  }catch(err){document.getElementById("engine").textContent="cannot reach floodgate: "+err}
}
refresh();setInterval(refresh,2000);
</script></body></html>
)HTML";
  return kPage;
}

}  // namespace floodgate::api
