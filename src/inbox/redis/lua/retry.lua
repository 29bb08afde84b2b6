-- `ARGV[3]` key, `ARGV[4]` token, `ARGV[5]` delay (ms), `ARGV[6]` error.
return retry(ARGV[3], ARGV[4], ARGV[5], ARGV[6])
