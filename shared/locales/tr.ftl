# SMS: the code early, then who it is for and how long it lives.
sms = { $app } kodunuz: { $code }. { $minutes } dakika geçerlidir.
# Voice: said twice; $code is the digits with commas between.
voice = { $app } doğrulama kodunuz: { $code }.
