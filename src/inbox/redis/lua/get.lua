-- `ARGV[3]` key (hex).
local fields = view(ARGV[3])
if fields then return { fields } end
return {}
