-- Argo CD health of an idbind.dev/WorkloadIdentityBinding, by the kstatus rules Flux uses, so
-- both tools agree on what "healthy" means:
--   being deleted                        -> Progressing (idbind is removing what it made in Azure)
--   status.observedGeneration behind     -> Progressing (idbind has not acted on the latest spec)
--   Stalled=True                         -> Degraded    (retrying will not help: fix the spec)
--   Reconciling=True                     -> Progressing (kstatus: InProgress even beside Ready)
--   Ready=True                           -> Healthy
--   anything else, or no status yet      -> Progressing
-- Written for Lua 5.1 (Argo CD evaluates health checks with gopher-lua).
local hs = {}

if obj.metadata ~= nil and obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Being deleted: idbind is cleaning up in Azure"
  return hs
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for idbind to report a status"
  return hs
end

-- A missing observedGeneration also counts as behind: idbind always writes it with its status.
if obj.metadata ~= nil and obj.metadata.generation ~= nil and obj.status.observedGeneration ~= obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for idbind to act on generation " .. tostring(obj.metadata.generation)
  return hs
end

local ready, stalled, reconciling = nil, nil, nil
if obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Ready" then
      ready = c
    elseif c.type == "Stalled" and c.status == "True" then
      stalled = c
    elseif c.type == "Reconciling" and c.status == "True" then
      reconciling = c
    end
  end
end

-- "Reason: message", or whichever of the two is there.
local function describe(c)
  local reason = c.reason or ""
  local message = c.message or ""
  if reason ~= "" and message ~= "" then
    return reason .. ": " .. message
  end
  return reason .. message
end

if stalled ~= nil then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end

if reconciling ~= nil then
  hs.status = "Progressing"
  hs.message = describe(reconciling)
  return hs
end

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready)
  return hs
end

hs.status = "Progressing"
if ready ~= nil then
  hs.message = describe(ready)
else
  hs.message = "Waiting for the Ready condition"
end
return hs
