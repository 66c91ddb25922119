-- Health of an Argo CD Application, as seen by its parent (app of apps). Argo CD removed this check in 1.8;
-- without it, sync waves between child Applications do not wait for a child to become Healthy.
-- Reports the child's own health; a child that has not reported yet is Progressing.
local hs = {}
hs.status = "Progressing"
hs.message = "Waiting for the Application to report its health"
if obj.status ~= nil and obj.status.health ~= nil and obj.status.health.status ~= nil then
  hs.status = obj.status.health.status
  hs.message = obj.status.health.message or ""
end
return hs
