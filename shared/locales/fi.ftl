# SMS: the code early, then who it is for and how long it lives.
sms = { $code } on vahvistuskoodisi palveluun { $app }. Se vanhenee { $minutes } minuutissa.
# Voice: said twice; $code is the digits with commas between.
voice = Vahvistuskoodisi palveluun { $app } on { $code }.
