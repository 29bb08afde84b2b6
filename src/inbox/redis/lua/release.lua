-- `ARGV[3]` key, `ARGV[4]` token.
return release(ARGV[3], ARGV[4])
