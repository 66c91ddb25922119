-- Health of an Argo CD Application, as seen by its parent (app of apps). Argo CD removed this check in 1.8;
-- without it, sync waves between child Applications do not wait for a child to become Healthy.
-- Reports the child's own health; a child that has not reported yet is Progressing. A child whose sync is
-- still running is Progressing too, unless Degraded: its resources can be Healthy before its sync has
-- finished, and the next wave must wait for the whole sync (a real Argo CD created the wave-1 Application
-- while wave -1's sync was still running).
local hs = {}
hs.status = "Progressing"
hs.message = "Waiting for the Application to report its health"
if obj.status ~= nil and obj.status.health ~= nil and obj.status.health.status ~= nil then
  hs.status = obj.status.health.status
  hs.message = obj.status.health.message or ""
end
if hs.status ~= "Degraded" and hs.status ~= "Progressing" then
  local op = nil
  if obj.status ~= nil then
    op = obj.status.operationState
  end
  if obj.operation ~= nil or (op ~= nil and op.phase == "Running") then
    hs.status = "Progressing"
    hs.message = "Sync in progress"
    if op ~= nil and op.message ~= nil and op.message ~= "" then
      hs.message = hs.message .. ": " .. op.message
    end
  end
end
return hs
