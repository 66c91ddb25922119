-- ArgoCD health check for trading.quantzoo.io/TradingSystem (Lua 5.1, as ArgoCD's gopher-lua runs it).
-- Install: argocd/argocd-cm-patch.yaml (key resource.customizations.health.trading.quantzoo.io_TradingSystem).
-- Tests: health_test.yaml + testdata/ (ArgoCD's upstream format), run by tests/argocd/ with argo-cd's own util/lua.
-- Only the libraries Argo CD opens for a health check: base, table, package, a safe os (no string, no math).
--
-- Order of the checks, first match wins:
--   1. deletionTimestamp set                      -> Progressing (the finalizer halts and flattens first)
--   2. condition Degraded=True, or phase Degraded -> Degraded (also when the kill switch is engaged: a halt
--                                                   that cannot be propagated must not look calm)
--   3. spec.killSwitch.engaged, or condition
--      KillSwitchEngaged=True                     -> Suspended, the message names the reason and who (a release
--                                                   stays Suspended until the operator reports it done)
--   4. no status yet                              -> Progressing
--   5. status.observedGeneration < generation     -> Progressing (the operator has not seen the last change)
--   6. Ready=True, observed at this generation    -> Healthy
--   7. Ready=False with a failure reason          -> Degraded (the operator's failure reasons, exact match)
--   8. anything else (Ready=False while starting, Ready Unknown or missing) -> Progressing

local function condition(status, condType)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == condType then
      return c
    end
  end
  return nil
end

local function describe(c, fallback)
  if c == nil then
    return fallback
  end
  local reason = c.reason or ""
  local message = c.message or ""
  if reason ~= "" and message ~= "" then
    return reason .. ": " .. message
  end
  if message ~= "" then
    return message
  end
  if reason ~= "" then
    return reason
  end
  return fallback
end

-- The Ready=False reasons the operator reports when the TradingSystem itself is at fault (quantzoo_operator.status.Reason;
-- tests/argocd checks the list against it). An exact lookup, not a substring search: Argo CD opens no `string`
-- library for a health check (no useOpenLibs), so string.find would be nil there.
local failureReasons = {
  ReconcileFailed = true,
  InvalidSpec = true,
  ChildRejected = true,
  CredentialsSecretMissing = true,
  CredentialsSecretInvalid = true,
}

local function isFailureReason(reason)
  return reason ~= nil and failureReasons[reason] == true
end

local function killSwitchMessage(spec, status, ksCond)
  local ks = (spec and spec.killSwitch) or {}
  local statusKs = (status and status.killSwitch) or {}
  local reason = ks.reason
  if reason == nil or reason == "" then
    reason = statusKs.reason
  end
  if (reason == nil or reason == "") and ksCond ~= nil then
    reason = ksCond.message
  end
  if reason == nil or reason == "" then
    reason = "no reason given"
  end
  local who = ks.operator
  if who == nil or who == "" then
    who = statusKs.by
  end
  if who == nil or who == "" then
    who = "unknown"
  end
  local mode = ks.mode or statusKs.mode or "Halt"
  local msg = "Kill switch engaged (" .. mode .. ") by " .. who .. ": " .. reason
  if ks.engaged == true and (statusKs.engaged ~= true) and (ksCond == nil or ksCond.status ~= "True") then
    msg = msg .. " (not yet acknowledged by the operator)"
  end
  if ks.engaged ~= true and ks.release ~= nil and ks.release.operator ~= nil then
    msg = msg .. " (release by " .. ks.release.operator .. " pending)"
  end
  return msg
end

local hs = {}
local spec = obj.spec or {}
local status = obj.status
local generation = obj.metadata and obj.metadata.generation

if obj.metadata ~= nil and obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Terminating: the operator halts trading and flattens before removing the workload"
  return hs
end

local degraded = condition(status, "Degraded")
local ksCond = condition(status, "KillSwitchEngaged")
local engaged = (spec.killSwitch ~= nil and spec.killSwitch.engaged == true)
  or (ksCond ~= nil and ksCond.status == "True")

if (degraded ~= nil and degraded.status == "True") or (status ~= nil and status.phase == "Degraded") then
  hs.status = "Degraded"
  hs.message = describe(degraded, "TradingSystem is Degraded")
  if engaged then
    hs.message = hs.message .. " (kill switch engaged)"
  end
  return hs
end

if engaged then
  hs.status = "Suspended"
  hs.message = killSwitchMessage(spec, status, ksCond)
  return hs
end

if status == nil or (status.observedGeneration == nil and status.conditions == nil) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
    .. " (observed " .. status.observedGeneration .. ")"
  return hs
end

local ready = condition(status, "Ready")
if ready ~= nil and ready.status == "True" then
  if generation ~= nil and ready.observedGeneration ~= nil and ready.observedGeneration < generation then
    hs.status = "Progressing"
    hs.message = "Ready condition is from generation " .. ready.observedGeneration
      .. ", waiting for generation " .. generation
    return hs
  end
  hs.status = "Healthy"
  hs.message = describe(ready, "TradingSystem is ready")
  return hs
end

if ready ~= nil and ready.status == "False" and isFailureReason(ready.reason) then
  hs.status = "Degraded"
  hs.message = describe(ready, "TradingSystem is not ready")
  return hs
end

hs.status = "Progressing"
hs.message = describe(ready, "Waiting for the Ready condition")
return hs
