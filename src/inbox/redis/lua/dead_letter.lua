-- `ARGV[3]` key, `ARGV[4]` token, `ARGV[5]` error.
return dead_letter(ARGV[3], ARGV[4], ARGV[5])
