-- `ARGV[3]` key, `ARGV[4]` token, `ARGV[5]` consumer, `ARGV[6]` duration (ms).
return renew(ARGV[3], ARGV[4], ARGV[5], ARGV[6])
