# SMS: the code early, then who it is for and how long it lives.
sms = { $code } ialah kod pengesahan { $app } anda. Sah selama { $minutes } minit.
# Voice: said twice; $code is the digits with commas between.
voice = Kod pengesahan { $app } anda ialah { $code }.
