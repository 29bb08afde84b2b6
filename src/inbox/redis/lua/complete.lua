-- `ARGV[3]` key, `ARGV[4]` token.
return complete(ARGV[3], ARGV[4])
