#include "api/status_page.h"

namespace floodgate::api {

namespace {

// The page itself holds no script and no style: both come from their own routes, so the
// Content-Security-Policy can forbid every inline one. Bar widths are set through the CSSOM
// (element.style), which a CSP without 'unsafe-inline' allows, unlike style attributes.
const char* const kHtmlHead = R"HTML(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>floodgate</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="floodgate-prefect-ui" content=")HTML";

const char* const kHtmlTail = R"HTML(">
<link rel="stylesheet" href="/status.css">
<script src="/status.js" defer></script>
</head><body>
<h1>floodgate</h1>
<div class="muted">Batches launched into Prefect. Refreshes every 2 s. <a href="/metrics">/metrics</a> · <a href="/readyz">/readyz</a></div>
<div id="engine" class="muted"></div>
<div id="why"></div>
<div class="legend muted" id="legend"></div>
<table><thead><tr><th>batch</th><th>state</th><th>progress</th><th>done / total</th><th>launch rate</th><th>ETA</th><th>running</th><th>failed</th><th>created</th></tr></thead>
<tbody id="rows"><tr><td colspan="9" class="muted">loading…</td></tr></tbody></table>
</body></html>
)HTML";

const char* const kCss =
    R"CSS(body{font:14px system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:20px;margin:0 0 4px} .muted{color:#777}
table{border-collapse:collapse;width:100%;margin-top:16px;background:#fff}
th,td{padding:6px 8px;border-bottom:1px solid #eee;text-align:left;vertical-align:middle}
.bar{display:flex;height:14px;width:320px;background:#eee;border-radius:3px;overflow:hidden}
.bar span{display:block;height:100%}
.COMPLETED{background:#2e9d4f}.LAUNCHED{background:#4a90d9}.LAUNCHING{background:#9cc3ea}
.RETRY_WAIT{background:#f0ad4e}.FAILED,.LAUNCH_FAILED{background:#d9534f}.STUCK{background:#c77c02}.CRASHED{background:#8e2c2a}
.CANCELLED,.SKIPPED{background:#999}.PENDING{background:#eee}
.state{font-weight:600}.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px}
#engine{margin-top:8px}
#why{margin-top:6px;font-weight:600}
#why.slow{color:#b35c00}#why.stopped{color:#c9302c}#why.ok{color:#2e7d32}
.failed a{margin-right:6px;font-size:12px}
)CSS";

const char* const kJs = R"JS("use strict";
const ORDER=["COMPLETED","LAUNCHED","LAUNCHING","RETRY_WAIT","FAILED","LAUNCH_FAILED","CRASHED","STUCK","CANCELLED","SKIPPED","PENDING"];
const DONE=["COMPLETED","FAILED","CRASHED","CANCELLED","LAUNCH_FAILED","SKIPPED","STUCK"];
const UI=(document.querySelector('meta[name="floodgate-prefect-ui"]').content||"").replace(/\/+$/,"");
function el(tag,cls,text){const e=document.createElement(tag);if(cls)e.className=cls;if(text!==undefined)e.textContent=String(text);return e}
function link(href,text){const a=el("a",null,text);a.href=href;a.target="_blank";a.rel="noopener noreferrer";return a}
function td(...kids){const t=el("td");for(const k of kids)t.append(k);return t}
function dur(s){if(s===null||s===undefined)return "–";s=Math.round(s);if(s<60)return s+" s";if(s<3600)return Math.floor(s/60)+" min "+(s%60)+" s";return Math.floor(s/3600)+" h "+Math.floor((s%3600)/60)+" min"}
function rate(r){return r===undefined?"–":(r>=10?r.toFixed(0):r.toFixed(1))+" /s"}
// Why launching is slow, most binding reason first.
function why(g){
  const views=g.batches||{};const capped=Object.keys(views).filter(k=>views[k].at_running_cap);
  if(g.paused_s>0)return ["stopped","paused by Retry-After: Prefect asked to wait, "+dur(g.paused_s)+" left"];
  if(g.breaker==="open")return ["stopped","circuit breaker open: Prefect keeps failing; launches wait for a trial request"];
  if(g.breaker==="half_open")return ["slow","circuit breaker half-open: trial requests to Prefect, one at a time"];
  const held=Object.keys(views).filter(k=>(views[k].waiting_on||[]).includes("backlog"));
  if(held.length)return ["slow","held by the backlog (children waiting to start): "+held.map(k=>k+" ("+views[k].backlog+"/"+views[k].max_backlog+")").join(", ")];
  if(capped.length)return ["slow","at the running cap: "+capped.map(k=>k+" ("+views[k].children_running+"/"+views[k].max_running+" running)").join(", ")];
  if(g.ready_items>0&&g.in_flight>=g.in_flight_limit)return ["slow","at the in-flight limit ("+g.in_flight+"/"+g.in_flight_limit+", "+g.limit_algorithm+")"];
  if(g.ready_items>0&&g.token_bucket_tokens!==null&&g.token_bucket_tokens<1)return ["slow","waiting for rate tokens (--rate)"];
  if(g.retry_budget_tokens!==undefined&&g.retry_budget_tokens<1&&g.pending_retries>0)return ["slow","retry budget spent: retries wait"];
  return ["ok",g.active_batches>0?"launching without a limit in the way":"idle"];
}
async function failedLinks(b){
  const out=[];
  for(const st of ["FAILED","CRASHED"]){
    if(!b.counts[st])continue;
    const r=await fetch("/v1/batches/"+encodeURIComponent(b.id)+"/runs?state="+st+"&limit=20");
    if(!r.ok)continue;
    for(const run of (await r.json()).runs)if(run.flow_run_id)out.push(run);
  }
  return out;
}
async function refresh(){
  try{
    const e=await (await fetch("/readyz")).json();
    const g=e.engine||{};const views=g.batches||{};
    const d=await (await fetch("/v1/batches?limit=200")).json();
    const rows=[];
    for(const b of d.batches.slice().reverse()){
      const t=Math.max(1,b.total);const v=views[b.id];
      const bar=el("div","bar");
      for(const s of ORDER){if(!b.counts[s])continue;const sp=el("span",s);sp.title=s+": "+b.counts[s];sp.style.width=(100*b.counts[s]/t)+"%";bar.append(sp)}
      const done=DONE.reduce((a,s)=>a+(b.counts[s]||0),0);
      const failed=(b.counts.FAILED||0)+(b.counts.CRASHED||0)+(b.counts.LAUNCH_FAILED||0)+(b.counts.STUCK||0);
      const idc=td(el("code",null,b.id),el("div","muted",b.deployment||""));
      if(UI){
        const href=b.parent_flow_run_id?UI+"/runs/flow-run/"+encodeURIComponent(b.parent_flow_run_id)
          :UI+"/runs?tags="+encodeURIComponent("floodgate-batch:"+b.id);
        const a=link(href,"runs in Prefect");a.className="runs";idc.append(a);
      }
      const fc=td(String(failed));fc.className="failed";
      if(UI&&failed>0&&v){for(const run of await failedLinks(b)){fc.append(" ");fc.append(link(UI+"/runs/flow-run/"+encodeURIComponent(run.flow_run_id),"#"+run.index))}}
      const tr=el("tr");
      const waits=v&&v.waiting_on&&v.waiting_on.length?el("div","muted","waiting on "+v.waiting_on.join(", ")):"";
      tr.append(idc,td(el("span","state",b.state),waits),td(bar),td(done+" / "+b.total+(b.sealed===false?" (open: more may come)":"")),
        td(v?rate(v.launch_rate):"–"),td(v?dur(v.eta_s):"–"),td(v?String(v.children_running):"–"),fc,td(el("span","muted",b.created_at)));
      rows.push(tr);
    }
    const body=document.getElementById("rows");
    if(rows.length)body.replaceChildren(...rows);else{const tr=el("tr");const c=td("no batches yet");c.colSpan=9;c.className="muted";tr.append(c);body.replaceChildren(tr)}
    document.getElementById("engine").textContent=`${e.status} · in flight ${g.in_flight}/${g.in_flight_limit} (${g.limit_algorithm}) · token bucket ${g.token_bucket_tokens===null?"off":Math.floor(g.token_bucket_tokens)} · breaker ${g.breaker} · retry budget ${Math.floor(g.retry_budget_tokens)} · ready items ${g.ready_items} · active batches ${g.active_batches}`;
    const [cls,msg]=why(g);const w=document.getElementById("why");w.className=cls;w.textContent=msg;
  }catch(err){document.getElementById("engine").textContent="cannot reach floodgate: "+err}
}
document.addEventListener("DOMContentLoaded",()=>{
  const lg=document.getElementById("legend");
  for(const s of ORDER){lg.append(el("span",s),s)}
  refresh();setInterval(refresh,2000);
});
)JS";

std::string attr_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

ServerResponse asset(const char* content_type, std::string body) {
  ServerResponse r;
  r.content_type = content_type;
  r.body = std::move(body);
  r.headers["Content-Security-Policy"] = status_page_csp();
  r.headers["X-Frame-Options"] = "DENY";
  r.headers["Referrer-Policy"] = "no-referrer";
  r.headers["X-Content-Type-Options"] = "nosniff";
  r.headers["Cache-Control"] = "no-cache";
  return r;
}

}  // namespace

const std::string& status_page_csp() {
  static const std::string kCsp =
      "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
      "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
  return kCsp;
}

std::optional<StatusPageAsset> status_page_response(const std::vector<std::string>& path_parts,
                                                    const std::string& prefect_ui_url) {
  if (path_parts.empty()) {
    return StatusPageAsset{"/", asset("text/html; charset=utf-8",
                                      kHtmlHead + attr_escape(prefect_ui_url) + kHtmlTail)};
  }
  if (path_parts.size() != 1) return std::nullopt;
  if (path_parts[0] == "status.js") {
    return StatusPageAsset{"/status.js", asset("text/javascript; charset=utf-8", kJs)};
  }
  if (path_parts[0] == "status.css") {
    return StatusPageAsset{"/status.css", asset("text/css; charset=utf-8", kCss)};
  }
  return std::nullopt;
}

}  // namespace floodgate::api
