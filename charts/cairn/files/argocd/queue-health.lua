-- Argo CD health of a Cairn Queue (cairn.dev/v1alpha1), from its status, which only Cairn writes.
-- Admitting: Healthy. Paused: Suspended. Not yet observed at its current generation: Progressing.
-- Written for Argo CD's Lua (5.1).
local hs = {}
local status = obj.status
local spec = obj.spec or {}
local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
if status == nil or (generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation)) then
  hs.status = "Progressing"
  hs.message = "Waiting for Cairn to observe the queue"
  return hs
end
local active = nil
if status.conditions ~= nil then
  for _, condition in ipairs(status.conditions) do
    if condition.type == "Active" then
      active = condition
    end
  end
end
local counts = tostring(status.running or 0) .. " running, " .. tostring(status.queued or 0) .. " queued"
if spec.paused == true or (active ~= nil and active.status == "False") then
  hs.status = "Suspended"
  hs.message = "Paused: " .. counts
else
  hs.status = "Healthy"
  hs.message = counts
  if spec.concurrencyLimit ~= nil then
    hs.message = counts .. " (limit " .. tostring(spec.concurrencyLimit) .. ")"
  end
end
return hs
