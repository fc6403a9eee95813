-- Argo CD health of a Cairn TaskRun (cairn.dev/v1alpha1), from its status, which only Cairn writes.
-- Succeeded: Healthy. Failed or Cancelled: Degraded. Queued, Starting, Running, Retrying: Progressing.
-- Waiting (a durable wait for a signal or a time): Suspended. Written for Argo CD's Lua (5.1).
local hs = {}
local status = obj.status
local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for Cairn to admit the run"
  return hs
end
local phase = status.phase
local why = status.message or status.reason or ""
local steps = ""
if status.progress ~= nil and status.progress.stepsCompleted ~= nil then
  steps = tostring(status.progress.stepsCompleted) .. " steps"
end
if phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = "Succeeded"
  if steps ~= "" then
    hs.message = "Succeeded after " .. steps
  end
elseif phase == "Failed" then
  hs.status = "Degraded"
  hs.message = "Failed: " .. why
elseif phase == "Cancelled" then
  hs.status = "Degraded"
  hs.message = "Cancelled: " .. why
elseif phase == "Waiting" then
  hs.status = "Suspended"
  hs.message = "Waiting: " .. why
elseif phase == "Queued" or phase == "Starting" or phase == "Running" or phase == "Retrying" then
  hs.status = "Progressing"
  hs.message = phase
  if status.attempt ~= nil then
    hs.message = hs.message .. " (attempt " .. tostring(status.attempt)
    if steps ~= "" then
      hs.message = hs.message .. ", " .. steps
    end
    hs.message = hs.message .. ")"
  end
  if why ~= "" then
    hs.message = hs.message .. ": " .. why
  end
else
  hs.status = "Unknown"
  hs.message = "Unknown phase " .. tostring(phase)
end
if hs.status ~= "Healthy" and hs.status ~= "Degraded" and generation ~= nil and status.observedGeneration ~= nil
    and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for Cairn to observe generation " .. tostring(generation)
end
return hs
